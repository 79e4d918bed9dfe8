"""The node type catalogue: built-in types and a third-party plugin, through one interface."""

from __future__ import annotations

import asyncio
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

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


CATALOG_FIELDS = """
  name group category subcategory icon documentationUrl subtitle defaultParameters
  parameterHints { parameter placeholder widget showWhen }
"""


async def test_the_catalog_gives_what_a_palette_and_a_form_need(alice):
    types = {
        t["name"]: t
        for t in (await alice.gql(f"{{ nodeTypes {{ {CATALOG_FIELDS} }} }}"))["nodeTypes"]
    }
    http = types["http_request"]
    assert http["category"] == "Core" and http["subcategory"] == "Helpers"
    assert http["icon"] == "fa:globe"
    assert http["documentationUrl"] == "docs/api.md#the-http-request-node"
    assert http["subtitle"] == "{method} {url}"
    hints = {hint["parameter"]: hint for hint in http["parameterHints"]}
    assert hints["jsonBody"] == {
        "parameter": "jsonBody",
        "placeholder": None,
        "widget": "JSON",
        "showWhen": {"bodyType": ["json"]},
    }
    assert hints["url"]["placeholder"] == "https://api.example.com/items"
    assert http["defaultParameters"]["method"] == "GET"
    assert types["code"]["parameterHints"][1]["widget"] == "CODE"
    assert types["set"]["defaultParameters"] == {  # version 2, the latest
        "include": "all_fields",
        "fields": [{"name": "", "value": "", "type": "auto"}],
    }
    # A plugin that says nothing of its palette place is in Community, with no hints.
    greet = types["acme.greet"]
    assert greet["category"] == "Community" and greet["parameterHints"] == []
    assert greet["icon"] is None and greet["subcategory"] is None


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ('search: "http"', {"http_request"}),
        ('search: "WEBHOOK respond"', {"respond_to_webhook"}),
        ('search: "no such type"', set()),
        ("group: TRIGGER", {"manual_trigger", "webhook", "schedule", "execute_workflow_trigger"}),
        ('category: "community"', {"acme.greet"}),
        ('category: "Core", search: "split"', {"split_out"}),
    ],
)
async def test_the_catalog_is_filtered(alice, arguments, expected):
    found = (await alice.gql(f"{{ nodeTypes({arguments}) {{ name }} }}"))["nodeTypes"]
    assert {t["name"] for t in found} == expected


def test_the_catalog_is_built_once_per_change_of_the_registry():
    from engine.node_types import NodeGroup, NodeType, load_registry
    from resolvers.node_types import _catalog

    registry = load_registry()  # its own: the tests' registry is shared
    first = _catalog(registry)
    assert _catalog(registry) is first  # requests reuse it
    later = NodeType(
        name="acme.later",
        version=1,
        display_name="Later",
        description="Later.",
        group=NodeGroup.ACTION,
    )
    registry.register(later)
    rebuilt = _catalog(registry)
    assert rebuilt is not first
    assert "acme.later" in [node_type.name for node_type, _ in rebuilt]


PACKAGES = (
    "{ nodeTypePackages { entryPoint distribution version error nodeTypes { name version } } }"
)


async def test_an_admin_sees_the_packages_that_provide_node_types(make_caller):
    admin = await make_caller("root", admin=True)
    packages = {p["entryPoint"]: p for p in (await admin.gql(PACKAGES))["nodeTypePackages"]}
    acme = packages["acme = loom_test_plugin:node_types"]
    assert acme["distribution"] == "loom-test-plugin" and acme["version"] == "0.1.0"
    assert acme["nodeTypes"] == [{"name": "acme.greet", "version": 1}] and acme["error"] is None
    builtin = packages["builtin = engine.nodes.builtin:node_types"]
    assert len(builtin["nodeTypes"]) == len(BUILTINS) + 1  # Set has two versions
    assert {"name": "set", "version": 2} in builtin["nodeTypes"]


async def test_a_member_sees_no_packages(alice):
    assert (await alice.gql(PACKAGES))["nodeTypePackages"] == []


async def _loom(*arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("loom"),
        "node-types",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_command_line_lists_and_shows_node_types():
    code, listed, _ = await _loom("list")
    assert code == 0
    assert any(line.split()[:2] == ["http_request", "v1"] for line in listed.splitlines())
    assert "acme = loom_test_plugin:node_types  (loom-test-plugin 0.1.0): 1 type(s)" in listed
    code, shown, _ = await _loom("show", "merge")
    assert code == 0
    described = json.loads(shown)
    assert described["name"] == "merge" and described["subcategory"] == "Flow"
    assert described["parametersSchema"]["properties"]["mode"]["default"] == "append"
    code, _, error = await _loom("show", "merge", "--version", "7")
    assert code == 1 and "node type 'merge' has no version 7 (it has [1])" in error
    code, _, error = await _loom("show", "nope")
    assert code == 1 and "no node type 'nope'" in error
