"""The node type catalogue: built-in types and a third-party plugin, through one interface."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from tests.factories import CREATE, edge, node, only, workflow_input

BUILTINS = {
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

NODE_TYPE_FIELDS = """
  name version versions displayName description group credentialKinds parametersSchema
  inputs { name displayName acceptsMany } outputs { name displayName acceptsMany }
"""
ALL = f"{{ nodeTypes {{ {NODE_TYPE_FIELDS} }} }}"
ONE = f"""
query($name: String!, $version: Int) {{
  nodeType(name: $name, version: $version) {{ {NODE_TYPE_FIELDS} }}
}}
"""


def test_the_test_plugin_is_installed():
    """tests/plugin_pkg, on the tests' path, registers `acme` in the `loom.node_types` group."""
    names = {ep.name for ep in entry_points(group="loom.node_types")}
    assert {"builtin", "acme"} <= names


async def test_node_types_lists_builtins_and_plugins(alice):
    types = (await alice.gql(ALL))["nodeTypes"]
    names = [t["name"] for t in types]
    assert set(names) == BUILTINS | {"acme.greet"}
    assert names == sorted(names)
    for node_type in types:
        assert node_type["displayName"] and node_type["description"], node_type["name"]
        assert node_type["version"] == max(node_type["versions"])
        assert node_type["parametersSchema"]["type"] == "object"


async def test_node_type_details(alice):
    limit = (await alice.gql(ONE, {"name": "limit"}))["nodeType"]
    assert limit["group"] == "TRANSFORM"
    assert limit["inputs"] == [{"name": "main", "displayName": "main", "acceptsMany": True}]
    assert [p["name"] for p in limit["outputs"]] == ["main"]
    assert limit["parametersSchema"]["required"] == ["maxItems"]
    assert "maxItems" in limit["parametersSchema"]["properties"]
    trigger = (await alice.gql(ONE, {"name": "manual_trigger"}))["nodeType"]
    assert (trigger["group"], trigger["inputs"]) == ("TRIGGER", [])
    branch = (await alice.gql(ONE, {"name": "if"}))["nodeType"]
    assert [(p["name"], p["displayName"]) for p in branch["outputs"]] == [
        ("true", "True"),
        ("false", "False"),
    ]
    merge = (await alice.gql(ONE, {"name": "merge"}))["nodeType"]
    assert [(p["name"], p["acceptsMany"]) for p in merge["inputs"]] == [
        ("input1", False),
        ("input2", False),
    ]


async def test_plugin_node_type(alice):
    greet = (await alice.gql(ONE, {"name": "acme.greet"}))["nodeType"]
    assert greet["displayName"] == "Greet"
    assert greet["group"] == "ACTION"
    assert greet["versions"] == [1]
    assert greet["parametersSchema"]["required"] == ["greeting"]
    assert greet["parametersSchema"]["properties"]["greeting"]["type"] == "string"


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("nope", None),
        ("acme.nope", None),
        ("limit", 99),
        ("", None),
        ("LIMIT", None),
        ("a\x00", None),
    ],
)
async def test_unknown_node_type_is_null(alice, name, version):
    assert (await alice.gql(ONE, {"name": name, "version": version}))["nodeType"] is None


async def test_explicit_version(alice):
    limit = (await alice.gql(ONE, {"name": "limit", "version": 1}))["nodeType"]
    assert limit["version"] == 1


async def test_plugin_nodes_are_validated_against_their_schema(alice):
    nodes = [node("t", "Start", "manual_trigger"), node("g", "Greet", "acme.greet")]
    incomplete = only(
        await alice.gql(CREATE, {"input": workflow_input(nodes=nodes, edges=[edge("t", "g")])})
    )
    assert incomplete["__typename"] == "Workflow"
    (issue,) = incomplete["nodes"][1]["issues"]
    assert (issue["code"], issue["severity"], issue["field"]) == (
        "MISSING_PARAMETER",
        "PARAMETER",
        "parameters.greeting",
    )
    nodes[1] = node("g", "Greet", "acme.greet", parameters={"greeting": "Hi {{ $json.name }}"})
    complete = only(
        await alice.gql(CREATE, {"input": workflow_input(nodes=nodes, edges=[edge("t", "g")])})
    )
    assert complete["nodes"][1]["issues"] == []
    extra = node("g", "Greet", "acme.greet", parameters={"greeting": "x", "shout": True})
    nodes[1] = extra
    with_extra = only(
        await alice.gql(CREATE, {"input": workflow_input(nodes=nodes, edges=[edge("t", "g")])})
    )
    assert [i["code"] for i in with_extra["nodes"][1]["issues"]] == ["INVALID_PARAMETER"]
