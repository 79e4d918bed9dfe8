"""Declarative node type definitions, checked and built without I/O."""

from __future__ import annotations

from typing import Any

import pytest

from engine.declarative import (
    build_node_type,
    declared_node_type,
    definition_of,
    definition_problems,
    is_declarative,
)
from engine.expressions import Scope
from engine.node_types import NodeGroup, NodeTypeRegistry, WorkspaceNodeTypes

GOOD: dict[str, Any] = {
    "displayName": "Contacts",
    "parametersSchema": {
        "type": "object",
        "properties": {"limit": {"type": "integer", "default": 10}, "q": {"type": "string"}},
    },
    "catalog": {"parameterHints": [{"name": "q", "placeholder": "ada"}], "subtitle": "{q}"},
    "requestTemplate": {
        "url": "https://crm.example.com/contacts/{{ $json.id }}",
        "query": {"limit": "{{ $parameter.limit }}"},
    },
    "responseMapping": {"select": "data.items", "split": True},
    "pagination": {"cursor": "meta.next", "cursorParameter": "after", "maxPages": 5},
}


def _problems(definition: Any, name: str | None = "ws.contacts") -> list[tuple[str, str | None]]:
    return [
        (problem.code, problem.field)
        for problem in definition_problems(name, definition, lambda taken: taken == "ws.taken")
    ]


def test_a_good_definition_has_no_problem_and_builds_an_action() -> None:
    assert _problems(GOOD) == []
    node_type = build_node_type("ws.contacts", 1, GOOD)
    assert node_type.group is NodeGroup.ACTION
    assert node_type.catalog.category == "Workspace"
    assert node_type.default_parameters() == {"limit": 10}
    assert node_type.migrate is None  # version 1 has no previous version
    assert build_node_type("ws.contacts", 2, GOOD).migrate is not None
    assert definition_of(node_type) == GOOD
    assert is_declarative(node_type.name) and not is_declarative("http_request")


def test_the_request_template_renders_parameters_and_the_item() -> None:
    behaviour = build_node_type("ws.contacts", 1, GOOD).execute
    rendered = behaviour.compiled.render(Scope(json={"id": 4}, parameter={"limit": 3}))
    assert behaviour._parameters(rendered) == {
        "method": "GET",
        "url": "https://crm.example.com/contacts/4",
        "query": [{"name": "limit", "value": 3}],
        "headers": [],
    }


@pytest.mark.parametrize(
    ("mapping", "body", "items"),
    [
        ({}, {"a": 1}, [{"a": 1}]),
        ({}, [1, 2], [{"value": [1, 2]}]),
        ({"split": True}, [1, {"b": 2}], [{"value": 1}, {"b": 2}]),
        ({"select": "data.items.1"}, {"data": {"items": [{"x": 1}, {"x": 2}]}}, [{"x": 2}]),
        ({"select": "missing.path"}, {"a": 1}, [{"value": None}]),
        ({"keep": ["a", "z"]}, {"a": 1, "b": 2}, [{"a": 1}]),
        ({"drop": ["a"]}, {"a": 1, "b": 2}, [{"b": 2}]),
    ],
)
def test_the_response_mapping(mapping: dict[str, Any], body: Any, items: list[Any]) -> None:
    definition = {**GOOD, "responseMapping": mapping}
    behaviour = build_node_type("ws.contacts", 1, definition).execute
    assert list(behaviour._items(body)) == items


def test_a_cursor_seen_before_ends_the_pages() -> None:
    behaviour = build_node_type("ws.contacts", 1, GOOD).execute
    request = {"url": "https://crm.example.com/c", "query": [{"name": "after", "value": "x"}]}
    seen: set[str] = set()
    following = behaviour._next(request, request["url"], {"meta": {"next": "y"}}, seen)
    assert following["query"] == [{"name": "after", "value": "y"}]
    assert behaviour._next(following, request["url"], {"meta": {"next": "y"}}, seen) is None
    assert behaviour._next(request, request["url"], {"meta": {}}, seen) is None


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        (
            {"parametersSchema": {"type": "string"}},
            [("INVALID_PARAMETERS_SCHEMA", "parametersSchema.type")],
        ),
        (
            {"pagination": {"cursor": "meta.next", "maxPages": 2}},
            [("INVALID_PAGINATION", "pagination.cursorParameter")],
        ),
        (
            {"pagination": {"cursor": "a", "nextUrl": "b", "cursorParameter": "c", "maxPages": 2}},
            [("INVALID_PAGINATION", "pagination")],
        ),
        (
            {"responseMapping": {"select": "a..b"}},
            [("INVALID_DEFINITION", "responseMapping.select")],
        ),
        ({"catalog": {"icon": "not an icon"}}, [("INVALID_CATALOG", "catalog")]),
        ({"unknown": 1}, [("INVALID_DEFINITION", "input")]),
    ],
)
def test_problems_name_their_place(change: dict[str, Any], problems: list[Any]) -> None:
    assert _problems({**GOOD, **change}) == problems


@pytest.mark.parametrize(
    ("reference", "ok"),
    [
        ("#/$defs/email", True),
        ("#", True),
        ("#/$defs/missing", False),
        ("http://10.0.0.1/schema.json", False),
        ("other.json#/x", False),
        ("#anchor", False),
    ],
)
def test_references_point_into_the_schema(reference: str, ok: bool) -> None:
    schema = {
        "type": "object",
        "$defs": {"email": {"type": "string"}},
        "properties": {"email": {"$ref": reference}},
    }
    found = _problems({**GOOD, "parametersSchema": schema, "catalog": {}})
    expected = (
        [] if ok else [("INVALID_PARAMETERS_SCHEMA", "parametersSchema.properties.email.$ref")]
    )
    assert found == expected


def test_patterns_are_refused_in_a_parameters_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}},
        "patternProperties": {"^x": {"type": "string"}},
    }
    assert _problems({**GOOD, "parametersSchema": schema, "catalog": {}}) == [
        ("INVALID_PARAMETERS_SCHEMA", "parametersSchema.properties.code.pattern"),
        ("INVALID_PARAMETERS_SCHEMA", "parametersSchema.patternProperties"),
    ]


def test_a_definition_that_is_not_an_object() -> None:
    assert _problems([1], None) == [("INVALID_DEFINITION", "input")]


def test_a_taken_name_and_a_malformed_one() -> None:
    assert _problems(GOOD, "ws.taken") == [("NODE_TYPE_NAME_TAKEN", "name")]
    assert _problems(GOOD, "ws.x" + "y" * 70) == [("INVALID_NODE_TYPE_NAME", "name")]


def test_a_stored_version_is_compiled_once() -> None:
    first = declared_node_type("row-1", "ws.contacts", 1, GOOD)
    assert declared_node_type("row-1", "ws.contacts", 1, GOOD) is first
    assert declared_node_type("row-2", "ws.contacts", 1, GOOD) is not first


def test_a_workspace_view_adds_its_types_to_the_registry(registry: NodeTypeRegistry) -> None:
    declared = {"ws.contacts": {1: build_node_type("ws.contacts", 1, GOOD)}}
    view = WorkspaceNodeTypes(registry, declared, ("row-1",))
    assert view.has_name("ws.contacts") and view.has_name("http_request")
    assert not view.has_name("ws.other")
    assert view.versions("ws.contacts") == [1] and view.versions("set") == registry.versions("set")
    assert view.get("ws.contacts", 2) is None
    assert [t.name for t in view.all()] == sorted(t.name for t in view.all())
    assert len(view.latest()) == len(registry.latest()) + 1
    assert view.revision == (registry.revision, ("row-1",))
