"""The built-in node type descriptors: valid schemas, sane ports, forms the editor can show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.graph import Graph, Node
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry
from engine.nodes.builtin import node_types
from engine.validation import Severity, validate_graph

# Version 1 of each (Set has a version 2: tests/engine/test_set_v2.py).
BUILTINS = {node_type.name: node_type for node_type in node_types() if node_type.version == 1}
REGISTRY = NodeTypeRegistry(BUILTINS.values())

# What a user typically fills in, one or more per type.
TYPICAL: list[tuple[str, dict[str, Any]]] = [
    ("manual_trigger", {}),
    (
        "set",
        {
            "fields": [
                {"name": "total", "value": "{{ $json.price * $json.quantity }}"},
                {"name": "currency", "value": "EUR"},
                {"name": "paid", "value": False},
                {"name": "cleared"},
            ],
            "keepOnlySet": True,
        },
    ),
    (
        "if",
        {
            "conditions": [
                {"left": "{{ $json.status }}", "operator": "equals", "right": "paid"},
                {"left": "{{ $json.email }}", "operator": "is_not_empty"},
            ],
            "combine": "all",
            "ignoreCase": True,
        },
    ),
    (
        "switch",
        {
            "rules": [
                {
                    "conditions": [
                        {"left": "{{ $json.country }}", "operator": "equals", "right": "DE"}
                    ],
                    "label": "Germany",
                },
                {
                    "conditions": [
                        {"left": "{{ $json.total }}", "operator": "gte", "right": 1000},
                        {"left": "{{ $json.vip }}", "operator": "equals", "right": True},
                    ],
                    "combine": "any",
                },
            ],
            "sendToAllMatching": False,
        },
    ),
    ("merge", {"mode": "append"}),
    ("merge", {"mode": "combine_by_key", "key": "customer.id"}),
    (
        "merge",
        {"mode": "combine_by_key", "key": "id", "input2Key": "customerId", "join": "outer"},
    ),
    ("merge", {"mode": "combine_by_position", "includeUnpaired": True}),
    ("merge", {"mode": "choose_branch", "branch": "input2"}),
    ("merge", {}),
    (
        "filter",
        {"conditions": [{"left": "{{ $json.name }}", "operator": "regex", "right": "^A"}]},
    ),
    ("filter", {"conditions": [{"left": "{{ $json.email }}", "operator": "exists"}]}),
    ("sort", {"fields": [{"field": "createdAt", "order": "desc"}, {"field": "name"}]}),
    ("limit", {"maxItems": 10, "keep": "last"}),
    ("limit", {"maxItems": "{{ $json.pageSize }}"}),
    ("aggregate", {}),
    ("aggregate", {"mode": "all_items", "destinationField": "orders"}),
    ("aggregate", {"mode": "fields", "fields": [{"field": "email", "renameTo": "emails"}]}),
    ("aggregate", {"mode": "fields", "fields": [{"field": "a.b"}], "keepMissing": True}),
    ("split_out", {"field": "orders", "keepOtherFields": True}),
    ("noop", {}),
    ("stop_and_error", {"message": "Order {{ $json.id }} has no customer"}),
    ("wait", {"amount": 5, "unit": "minutes"}),
    ("wait", {"amount": 0.5}),
    ("wait", {"amount": "{{ $json.delaySeconds }}", "unit": "seconds"}),
    ("wait", {"resume": "at_time", "until": "2025-01-31T09:00:00Z"}),
    ("wait", {"resume": "at_time", "until": "2025-01-31 09:00"}),
    ("wait", {"resume": "at_time", "until": "{{ $json.remindAt }}"}),
    (
        "http_request",
        {
            "method": "POST",
            "url": "https://api.example.com/orders/{{ $json.id }}",
            "query": [{"name": "expand", "value": "items"}],
            "headers": [{"name": "Accept", "value": "application/json"}],
            "bodyType": "json",
            "jsonBody": {"status": "paid"},
            "timeoutSeconds": 10,
            "maxRedirects": 2,
            "responseFormat": "json",
            "splitArray": True,
            "retry": {"maxAttempts": 5, "backoffSeconds": 0.5},
        },
    ),
    ("webhook", {"path": "orders/new", "methods": ["POST", "PUT"], "responseMode": "last_node"}),
    ("schedule", {"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "missed": "run_once"}),
    ("schedule", {"mode": "interval", "intervalSeconds": 300}),
    ("execute_workflow", {"workflowId": "{{ $json.target }}", "mode": "each_item"}),
    (
        "execute_workflow",
        {"workflowId": "w-1", "source": "draft", "waitForCompletion": False},
    ),
    ("execute_workflow_trigger", {}),
    (
        "code",
        # Taken literally: `{{ }}` in a script is JavaScript, not an expression.
        {"mode": "each_item", "code": "const t = `{{ ${$json.name} }}`;\nreturn {json: {t}};"},
    ),
    (
        "respond_to_webhook",
        {
            "status": 201,
            "headers": [{"name": "Location", "value": "/orders/{{ $json.id }}"}],
            "body": {"id": "{{ $json.id }}"},
        },
    ),
]

# Common mistakes, each with the parameter field the problem must point at.
MISTAKES: list[tuple[str, dict[str, Any], str]] = [
    ("webhook", {"path": "/../etc"}, "parameters.path"),
    ("execute_workflow", {}, "parameters.workflowId"),
    ("execute_workflow", {"workflowId": "w", "mode": "each"}, "parameters.mode"),
    ("execute_workflow", {"workflowId": "w", "source": "latest"}, "parameters.source"),
    (
        "execute_workflow",
        {"workflowId": "w", "waitForCompletion": "yes"},
        "parameters.waitForCompletion",
    ),
    ("schedule", {"mode": "interval"}, "parameters.intervalSeconds"),
    ("schedule", {"missed": "later", "cron": "* * * * *"}, "parameters.missed"),
    ("webhook", {"methods": []}, "parameters.methods"),
    ("webhook", {"responseMode": "later"}, "parameters.responseMode"),
    ("respond_to_webhook", {"status": 42}, "parameters.status"),
    ("http_request", {}, "parameters.url"),
    ("http_request", {"url": "https://x", "method": "FETCH"}, "parameters.method"),
    ("http_request", {"url": "https://x", "maxRedirects": 9}, "parameters.maxRedirects"),
    ("set", {}, "parameters.fields"),
    ("set", {"fields": []}, "parameters.fields"),
    ("set", {"fields": [{"name": ""}]}, "parameters.fields[0].name"),
    ("set", {"fields": [{"name": "a"}], "keepOnlySet": "yes"}, "parameters.keepOnlySet"),
    ("if", {"conditions": [{"left": "x", "operator": "equals"}]}, "parameters.conditions[0].right"),
    (
        "if",
        {"conditions": [{"left": "x", "operator": "like", "right": 1}]},
        "parameters.conditions[0].operator",
    ),
    (
        "switch",
        {"rules": [{"conditions": [{"left": 1, "operator": "is_empty"}]}] * 5},
        "parameters.rules",
    ),
    ("merge", {"mode": "combine_by_key"}, "parameters.key"),
    ("merge", {"mode": "zip"}, "parameters.mode"),
    ("merge", {"mode": "combine_by_key", "key": "id", "join": "cross"}, "parameters.join"),
    ("if", {"conditions": [{"left": 1, "operator": "gt"}]}, "parameters.conditions[0].right"),
    ("sort", {"fields": [{"field": "a", "order": "up"}]}, "parameters.fields[0].order"),
    ("limit", {"maxItems": 0}, "parameters.maxItems"),
    ("limit", {"maxItems": "ten"}, "parameters.maxItems"),
    ("aggregate", {"mode": "fields"}, "parameters.fields"),
    ("split_out", {}, "parameters.field"),
    ("stop_and_error", {"message": "   "}, "parameters.message"),
    ("wait", {"amount": -1}, "parameters.amount"),
    ("wait", {}, "parameters.amount"),
    ("wait", {"resume": "at_time"}, "parameters.until"),
    ("wait", {"resume": "at_time", "until": "next tuesday"}, "parameters.until"),
    ("noop", {"anything": 1}, "parameters.anything"),
    ("code", {}, "parameters.code"),
    ("code", {"code": ""}, "parameters.code"),
    ("code", {"code": "return []", "mode": "per_item"}, "parameters.mode"),
    ("code", {"code": "return []", "language": "python"}, "parameters.language"),
]


def _schemas(schema: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema that declares fields, skipping if/then/else (they only constrain)."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _schemas(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _schemas(schema["items"], f"{path}[]")


def _parameter_problems(type_name: str, parameters: dict[str, Any]) -> list[Any]:
    node = Node(id="n", name="Node", type=type_name, parameters=parameters)
    report = validate_graph(Graph(nodes=(node,)), REGISTRY)
    assert report.ok, report.structural
    # Hints (Set 1 is deprecated) are advice, not problems with the parameters.
    return [p for p in report.parameters.get("n", ()) if p.severity is not Severity.HINT]


def test_every_builtin_is_there_in_version_1() -> None:
    assert set(BUILTINS) == {
        "manual_trigger",
        "set",
        "if",
        "switch",
        "merge",
        "filter",
        "sort",
        "limit",
        "aggregate",
        "split_out",
        "noop",
        "stop_and_error",
        "wait",
        "http_request",
        "webhook",
        "respond_to_webhook",
        "schedule",
        "execute_workflow",
        "execute_workflow_trigger",
        "code",
    }
    assert all(node_type.version == 1 for node_type in BUILTINS.values())
    assert len(node_types()) == len(BUILTINS) + 1  # and Set's version 2


@pytest.mark.parametrize("node_type", BUILTINS.values(), ids=lambda node_type: node_type.name)
def test_schema_is_valid_draft_2020_12(node_type: NodeType) -> None:
    Draft202012Validator.check_schema(node_type.parameters_schema)
    assert node_type.parameters_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("node_type", BUILTINS.values(), ids=lambda node_type: node_type.name)
def test_every_field_has_title_and_description_and_no_extras(node_type: NodeType) -> None:
    for path, schema in _schemas(node_type.parameters_schema, "parameters"):
        if path != "parameters" and not path.endswith("[]"):
            assert schema.get("title"), f"{path} has no title"
            assert schema.get("description"), f"{path} has no description"
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, f"{path} allows extra fields"
            assert set(schema.get("required", ())) <= set(schema["properties"]), path


@pytest.mark.parametrize("node_type", BUILTINS.values(), ids=lambda node_type: node_type.name)
def test_texts_are_written_for_people(node_type: NodeType) -> None:
    assert node_type.display_name and node_type.display_name[0].isupper()
    assert node_type.description.endswith(".")
    assert len({port.name for port in node_type.inputs}) == len(node_type.inputs)
    assert len({port.name for port in node_type.outputs}) == len(node_type.outputs)


@pytest.mark.parametrize(("type_name", "parameters"), TYPICAL, ids=[name for name, _ in TYPICAL])
def test_typical_parameters_pass(type_name: str, parameters: dict[str, Any]) -> None:
    # Plain Draft 2020-12 (what the editor runs) and Loom's validation both accept them.
    assert (
        list(Draft202012Validator(BUILTINS[type_name].parameters_schema).iter_errors(parameters))
        == []
    )
    assert _parameter_problems(type_name, parameters) == []


def test_every_builtin_has_a_typical_example() -> None:
    assert {name for name, _ in TYPICAL} == set(BUILTINS)


@pytest.mark.parametrize(
    ("type_name", "parameters", "field"),
    MISTAKES,
    ids=[f"{name}-{field}" for name, _, field in MISTAKES],
)
def test_common_mistakes_are_reported_on_the_right_field(
    type_name: str, parameters: dict[str, Any], field: str
) -> None:
    problems = _parameter_problems(type_name, parameters)
    assert field in {problem.field for problem in problems}, problems


def test_ports() -> None:
    def ports(name: str) -> tuple[list[str], list[str]]:
        node_type = BUILTINS[name]
        return [p.name for p in node_type.inputs], [p.name for p in node_type.outputs]

    assert ports("manual_trigger") == ([], ["main"])
    assert ports("if") == (["main"], ["true", "false"])
    assert ports("switch") == (["main"], ["output0", "output1", "output2", "output3", "fallback"])
    assert ports("merge") == (["input1", "input2"], ["main"])
    assert ports("filter") == (["main"], ["main", "discarded"])
    assert ports("stop_and_error") == (["main"], [])
    for name in (
        "set",
        "sort",
        "limit",
        "aggregate",
        "split_out",
        "noop",
        "wait",
        "execute_workflow",
    ):
        assert ports(name) == (["main"], ["main"]), name
    assert not any(port.accepts_many for port in BUILTINS["merge"].inputs)
    assert BUILTINS["switch"].parameters_schema["properties"]["rules"]["maxItems"] == 4


def test_groups() -> None:
    assert BUILTINS["manual_trigger"].group is NodeGroup.TRIGGER
    assert BUILTINS["manual_trigger"].is_trigger
    triggers = {"manual_trigger", "webhook", "schedule", "execute_workflow_trigger"}
    assert all(BUILTINS[name].is_trigger for name in triggers)
    assert not any(t.is_trigger for name, t in BUILTINS.items() if name not in triggers)
    assert BUILTINS["http_request"].group is NodeGroup.ACTION
    assert BUILTINS["set"].group is NodeGroup.TRANSFORM
    assert BUILTINS["if"].group is NodeGroup.FLOW


def test_conditions_offer_every_operator() -> None:
    condition = BUILTINS["if"].parameters_schema["properties"]["conditions"]["items"]
    assert condition["properties"]["operator"]["enum"] == [
        "equals",
        "not_equals",
        "gt",
        "gte",
        "lt",
        "lte",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "is_empty",
        "is_not_empty",
        "regex",
        "exists",
        "not_exists",
    ]
    assert condition["required"] == ["left", "operator"]
