"""Set version 2 (`include`, a type per field), its migration from version 1, and upgrades."""

from __future__ import annotations

from typing import Any

import pytest

from engine.editing import EditError, upgrade_node
from engine.graph import Graph, Node
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, ParameterMigrationError
from engine.nodes.base import NodeError
from engine.nodes.builtin import node_types
from engine.nodes.edit_fields import migrate_set_to_version_2
from tests.engine.node_runner import context

SET_V2 = next(t for t in node_types() if t.name == "set" and t.version == 2)
REGISTRY = NodeTypeRegistry(node_types())


async def run_v2(parameters: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    inputs = {"main": items}
    ctx = context("set", parameters, inputs)
    outputs = await SET_V2.execute(ctx, inputs)
    return list(outputs["main"])


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("auto", "{{ $json.n }}", "7"),
        ("number", "{{ $json.n }}", 7),
        ("number", " 2.5 ", 2.5),
        ("string", "{{ $json.count }}", "3"),
        ("string", "{{ [1, 2] }}", "[1,2]"),
        ("boolean", "TRUE", True),
        ("boolean", "{{ $json.flag }}", False),
        ("object", '{"a": 1}', {"a": 1}),
        ("array", "{{ $json.list }}", [1, 2]),
    ],
)
async def test_each_field_is_converted_to_its_type(kind: str, value: Any, expected: Any) -> None:
    item = {"n": "7", "count": 3, "flag": False, "list": [1, 2]}
    parameters = {"fields": [{"name": "out", "value": value, "type": kind}]}
    assert (await run_v2(parameters, [item]))[0]["out"] == expected


@pytest.mark.parametrize(
    ("kind", "value", "problem"),
    [
        ("number", "seven", 'must be a number, got "seven"'),
        ("number", True, "must be a number, got true"),
        ("boolean", "yes", 'must be true or false, got "yes"'),
        ("object", "[1]", "must be an object, got [1]"),
        ("object", "{not json", "must be JSON of an object"),
        ("array", {"a": 1}, 'must be an array, got {"a": 1}'),
        ("array", "[" * 100_000, "must be JSON of an array"),
        ("object", '{"a": NaN}', "must be JSON of an object"),
        ("colour", "red", None),
    ],
)
async def test_a_value_that_cannot_be_converted_fails_naming_its_field(
    kind: str, value: Any, problem: str | None
) -> None:
    fields = [{"name": "ok", "value": 1}, {"name": "out", "value": value, "type": kind}]
    with pytest.raises(NodeError) as caught:
        await run_v2({"fields": fields}, [{}])
    assert caught.value.error_type == "INVALID_PARAMETER"
    where = "fields[1].type" if problem is None else "fields[1].value"
    assert caught.value.details["parameter"] == where
    if problem is not None:
        assert problem in caught.value.message


async def test_include_only_set_keeps_only_the_fields_set() -> None:
    parameters = {"fields": [{"name": "a", "value": 1}], "include": "only_set"}
    assert await run_v2(parameters, [{"b": 2}]) == [{"a": 1}]
    parameters["include"] = "all_fields"
    assert await run_v2(parameters, [{"b": 2}]) == [{"b": 2, "a": 1}]


@pytest.mark.parametrize(
    ("version_1", "version_2"),
    [
        (
            {"fields": [{"name": "a", "value": "{{ $json.x }}"}], "keepOnlySet": True},
            {
                "fields": [{"name": "a", "value": "{{ $json.x }}", "type": "auto"}],
                "include": "only_set",
            },
        ),
        (
            {"fields": [{"name": "a"}]},
            {"fields": [{"name": "a", "type": "auto"}], "include": "all_fields"},
        ),
    ],
)
def test_version_1_parameters_migrate_to_version_2(
    version_1: dict[str, Any], version_2: dict[str, Any]
) -> None:
    assert migrate_set_to_version_2(version_1) == version_2


def test_what_cannot_migrate_is_said_all_at_once() -> None:
    with pytest.raises(ParameterMigrationError) as caught:
        migrate_set_to_version_2({"fields": [{"name": "a"}, "junk"], "keepOnlySet": "{{ true }}"})
    assert [path for path, _ in caught.value.problems] == ["keepOnlySet", "fields[1]"]


def _graph(node: Node) -> Graph:
    return Graph(nodes=(node,))


def test_an_upgrade_carries_the_parameters_over() -> None:
    node = Node(
        id="s",
        name="S",
        type="set",
        type_version=1,
        parameters={"fields": [{"name": "a", "value": 1}], "keepOnlySet": False},
    )
    upgraded = upgrade_node(_graph(node), "s", 2, REGISTRY).node("s")
    assert upgraded is not None and upgraded.type_version == 2
    assert upgraded.parameters == {
        "fields": [{"name": "a", "value": 1, "type": "auto"}],
        "include": "all_fields",
    }


@pytest.mark.parametrize(
    ("node_id", "to_version", "code"),
    [
        ("nope", 2, "NODE_NOT_FOUND"),
        ("s", 3, "UNKNOWN_TYPE_VERSION"),
        ("s", 1, "NOT_NEWER"),
    ],
)
def test_an_upgrade_that_cannot_be_made_is_refused(
    node_id: str, to_version: int, code: str
) -> None:
    node = Node(id="s", name="S", type="set", type_version=1, parameters={"fields": []})
    with pytest.raises(EditError) as caught:
        upgrade_node(_graph(node), node_id, to_version, REGISTRY)
    assert caught.value.code == code


def test_a_version_without_a_migration_cannot_be_reached() -> None:
    def plain(version: int) -> NodeType:
        return NodeType(
            name="acme.plain",
            version=version,
            display_name="Plain",
            description="Plain.",
            group=NodeGroup.ACTION,
        )

    registry = NodeTypeRegistry([plain(1), plain(2)])  # version 2 declares no migration
    node = Node(id="p", name="P", type="acme.plain", type_version=1)
    with pytest.raises(EditError) as caught:
        upgrade_node(_graph(node), "p", 2, registry)
    assert caught.value.code == "NO_MIGRATION"


def test_a_failed_migration_names_the_node() -> None:
    node = Node(
        id="s", name="S", type="set", type_version=1, parameters={"fields": [], "keepOnlySet": "x"}
    )
    with pytest.raises(ParameterMigrationError) as caught:
        upgrade_node(_graph(node), "s", 2, REGISTRY)
    assert caught.value.node_id == "s"


@pytest.mark.parametrize("include", ["only_set", "all_fields"])
async def test_rendered_fields_of_type_auto_follow_include(include: str) -> None:
    # Fixed include, every field auto: read as version 1 without converting anything.
    parameters = {"fields": [{"name": "a", "value": "{{ $json.b * 2 }}"}], "include": include}
    expected = {"a": 4} if include == "only_set" else {"b": 2, "a": 4}
    assert await run_v2(parameters, [{"b": 2}]) == [expected]


def _refuses_without_saying_why(parameters: dict[str, Any]) -> dict[str, Any]:
    raise ParameterMigrationError([])


def _version(number: int, migrate: Any = None) -> NodeType:
    return NodeType(
        name="acme.steps",
        version=number,
        display_name="Steps",
        description="Steps.",
        group=NodeGroup.ACTION,
        migrate=migrate,
    )


def test_an_upgrade_steps_over_versions_never_installed() -> None:
    registry = NodeTypeRegistry([_version(1), _version(3, lambda p: {**p, "to": 3})])
    node = Node(id="x", name="X", type="acme.steps", type_version=1, parameters={"a": 1})
    upgraded = upgrade_node(_graph(node), "x", 3, registry).node("x")
    assert upgraded is not None and upgraded.parameters == {"a": 1, "to": 3}


@pytest.mark.parametrize(
    ("migrate", "message"),
    [
        (lambda p: p["missing"], "version 2's migration failed: KeyError: 'missing'"),
        (
            lambda p: (_ for _ in ()).throw(ParameterMigrationError([])),
            "version 2's migration refused them",
        ),
    ],
)
def test_a_migration_that_breaks_is_a_problem_of_the_node(migrate: Any, message: str) -> None:
    registry = NodeTypeRegistry([_version(1), _version(2, migrate)])
    node = Node(id="x", name="X", type="acme.steps", type_version=1)
    with pytest.raises(ParameterMigrationError) as caught:
        upgrade_node(_graph(node), "x", 2, registry)
    assert caught.value.node_id == "x"
    assert caught.value.problems == [("", message)]
