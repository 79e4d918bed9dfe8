"""The fast parameter check (jsonschema-rs) vouches only for what jsonschema accepts."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.graph import Graph, Node
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry
from engine.nodes.builtin import node_types
from engine.validation import Problem, Severity, validate_graph
from engine.validation.schemas import ParameterValidator, fast_validator, without_annotations


def plugin_problems(schema: dict[str, Any], parameters: dict[str, Any]) -> list[Problem]:
    """Parameter problems of one node of a plugin type with this parameters schema."""
    node_type = NodeType(
        name="acme.probe",
        version=1,
        display_name="Probe",
        description="Probes.",
        group=NodeGroup.ACTION,
        parameters_schema={"type": "object", **schema},
    )
    subject = Graph(nodes=(Node(id="p", name="Probe", type="acme.probe", parameters=parameters),))
    report = validate_graph(subject, NodeTypeRegistry([node_type]))
    return list(report.parameters.get("p", ()))


def test_every_builtin_type_gets_a_fast_validator() -> None:
    # Without one, every node of the type pays for jsonschema on every first check.
    for node_type in node_types():
        assert fast_validator(without_annotations(node_type.parameters_schema)), node_type.name


@pytest.mark.parametrize(
    "schema",
    [
        {"patternProperties": {"^x": {"type": "string"}}},
        {"properties": {"a": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
        {"$ref": "https://example.com/remote.json"},
    ],
)
def test_what_it_cannot_mirror_is_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert fast_validator(schema) is None


# Each value is read differently by Rust's regex dialect, number model or `required`; the fast
# validator must agree with jsonschema on it all the same.
AGREEMENT: list[tuple[dict[str, Any], object]] = [
    ({"required": ["a"]}, {"a": " "}),
    ({"required": ["a"]}, {"a": "\u3000"}),
    ({"required": ["a"]}, {"a": "\x1c"}),
    ({"required": ["a"]}, {"a": "\ufeff"}),
    ({"not": {"required": ["a"]}}, {"a": ""}),
    ({"$defs": {"n": {"required": ["a"]}}, "$ref": "#/$defs/n"}, {"a": "\t"}),
    ({"pattern": "^a$"}, "a\n"),
    ({"not": {"pattern": "^a$"}}, "a\n"),
    ({"pattern": "^\\s$"}, "\ufeff"),
    ({"not": {"pattern": "^\\s$"}}, "\ufeff"),
    ({"pattern": "^\\d$"}, "\u0663"),
    ({"pattern": "(?P<word>\\w+)\\Z"}, "café"),
    ({"propertyNames": {"pattern": "^a$"}}, {"a\n": 1}),
    ({"multipleOf": 0.1}, 0.3),
    ({"not": {"multipleOf": 0.1}}, 0.3),
    ({"multipleOf": 3}, 9),
    ({"type": "integer"}, 1.0),
    ({"enum": [1]}, True),
    ({"const": [1, {"a": 1}]}, [1.0, {"a": 1.0}]),
    ({"uniqueItems": True}, [1, True]),
    ({"uniqueItems": True}, [{"a": 1, "b": 2}, {"b": 2, "a": 1}]),
    ({"maximum": 9007199254740992.0}, 9007199254740993),
    ({"maxLength": 1}, "😀"),
    ({"maxLength": 1}, "e\u0301"),
    ({"format": "email"}, "not an address"),
    ({"properties": {"a": {"pattern": "x"}}, "unevaluatedProperties": False}, {"a": "x"}),
]


@pytest.mark.parametrize(("schema", "instance"), AGREEMENT)
def test_the_fast_validator_agrees_with_jsonschema(
    schema: dict[str, Any], instance: object
) -> None:
    fast = fast_validator(schema)
    assert fast is not None
    assert fast.is_valid(instance) == ParameterValidator(schema).is_valid(instance)


def test_blank_unicode_space_is_missing() -> None:
    (problem,) = plugin_problems({"required": ["a"]}, {"a": "\u3000"})
    assert (problem.code, problem.field) == ("MISSING_PARAMETER", "parameters.a")


def test_python_regex_dialect_decides() -> None:
    # Python's `$` matches before a final newline, Rust's does not.
    (problem,) = plugin_problems({"properties": {"a": {"not": {"pattern": "^a$"}}}}, {"a": "a\n"})
    assert problem.message == "parameters.a: 'a\\u000a' is not allowed here"


def test_jsonschema_float_arithmetic_decides() -> None:
    (problem,) = plugin_problems({"properties": {"step": {"multipleOf": 0.1}}}, {"step": 0.3})
    assert (problem.code, problem.field) == ("INVALID_PARAMETER", "parameters.step")


def test_nan_is_checked_by_jsonschema() -> None:
    # jsonschema-rs takes NaN for no number at all, jsonschema for a number.
    schema = {"properties": {"x": {"not": {"type": "number"}}}}
    (problem,) = plugin_problems(schema, {"x": math.nan})
    assert problem.field == "parameters.x"


def test_pattern_properties_are_checked_by_jsonschema() -> None:
    schema = {"patternProperties": {"^a$": {"type": "string"}}}
    (problem,) = plugin_problems(schema, {"a\n": 1})
    assert problem.field == "parameters['a\\u000a']"


def test_lone_surrogates_are_checked_by_jsonschema() -> None:
    # Rust strings cannot hold them; the problem they are is structural (INVALID_CHARACTER).
    schema = {"properties": {"a": {"type": "string", "maxLength": 3}}}
    assert plugin_problems(schema, {"a": "\ud800"}) == []
    (problem,) = plugin_problems(schema, {"a": "\ud800abc"})
    assert (problem.severity, problem.field) == (Severity.PARAMETER, "parameters.a")


def test_large_parameters_get_the_same_problems() -> None:
    # Over the memo's size, the fast check runs on the decoded text, jsonschema on the original.
    blob = "x" * 5000
    schema = {"properties": {"a": {"type": "string"}, "b": {"minimum": 1}}, "required": ["a"]}
    assert plugin_problems(schema, {"a": blob, "b": 1}) == []
    problems = plugin_problems(schema, {"a": blob, "b": 0})
    assert [p.message for p in problems] == ["parameters.b: 0 is less than the minimum of 1"]
