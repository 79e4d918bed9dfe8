"""upgradeNode: one node moved to a newer version of its type, parameters carried over."""

from __future__ import annotations

from typing import Any

from tests.api.test_executions import execute, finished
from tests.factories import UPGRADE_NODE, create_workflow, edge, node, only, publish_workflow


def _set_v1(**parameters: Any) -> dict[str, Any]:
    fields = [{"name": "double", "value": "{{ $json.price * 2 }}"}]
    return node(
        "s",
        "Double",
        "set",
        typeVersion=1,
        parameters={"fields": fields, "keepOnlySet": True, **parameters},
    )


async def _workflow(alice: Any, **parameters: Any) -> dict[str, Any]:
    nodes = [node("t", "Start", "manual_trigger"), _set_v1(**parameters)]
    return await create_workflow(alice, nodes=nodes, edges=[edge("t", "s")])


async def upgrade(alice: Any, workflow: dict[str, Any], node_id: str, to: int) -> dict[str, Any]:
    variables = {"wf": workflow["id"], "nodeId": node_id, "to": to, "v": workflow["version"]}
    return dict(only(await alice.gql(UPGRADE_NODE, variables)))


async def test_a_node_is_upgraded_with_its_parameters_carried_over(alice):
    workflow = await _workflow(alice)
    upgraded = await upgrade(alice, workflow, "s", 2)
    assert upgraded["__typename"] == "Workflow", upgraded
    assert upgraded["version"] == workflow["version"] + 1
    (set_node,) = [n for n in upgraded["nodes"] if n["id"] == "s"]
    assert set_node["typeVersion"] == 2
    assert set_node["parameters"] == {
        "fields": [{"name": "double", "value": "{{ $json.price * 2 }}", "type": "auto"}],
        "include": "only_set",
    }
    assert set_node["issues"] == []


async def _problems(result: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    assert result["__typename"] == "ValidationError", result
    return [(p["code"], p["nodeId"], p["field"]) for p in result["problems"]]


async def test_upgrades_that_cannot_be_made_are_refused_and_change_nothing(alice):
    workflow = await _workflow(alice)
    cases = [
        ("s", 1, ("NOT_NEWER", "s", "toVersion")),
        ("s", 9, ("UNKNOWN_TYPE_VERSION", "s", "toVersion")),
        ("nope", 2, ("NODE_NOT_FOUND", "nope", "nodeId")),
    ]
    for node_id, to, expected in cases:
        assert await _problems(await upgrade(alice, workflow, node_id, to)) == [expected]
    # Nothing was saved: the version is the same, and the node still on version 1.
    assert (await upgrade(alice, workflow, "s", 2))["__typename"] == "Workflow"


async def test_a_migration_that_fails_says_which_parameter(alice):
    workflow = await _workflow(alice, keepOnlySet="{{ $json.keep }}")
    problems = await _problems(await upgrade(alice, workflow, "s", 2))
    assert problems == [("MIGRATION_FAILED", "s", "parameters.keepOnlySet")]


async def test_a_stale_version_is_a_conflict(alice):
    workflow = await _workflow(alice)
    stale = {**workflow, "version": workflow["version"] + 5}
    assert (await upgrade(alice, stale, "s", 2))["__typename"] == "VersionConflictError"


async def test_a_deprecated_version_is_a_hint_and_still_publishes_and_runs(app, alice):
    workflow = await _workflow(alice)
    runnable = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { runnable } }", {"id": workflow["id"]}
    )
    assert runnable["workflow"]["runnable"] is True  # a hint does not stop it
    (set_node,) = [n for n in workflow["nodes"] if n["id"] == "s"]
    (hint,) = set_node["issues"]
    assert hint["code"] == "NODE_TYPE_DEPRECATED" and hint["severity"] == "HINT"
    assert hint["field"] == "typeVersion"
    assert "version 2 is the newest (upgradeNode moves it there)" in hint["message"]
    await publish_workflow(alice, workflow)  # asserts it was published
    started = await execute(alice, workflow["id"], input={"price": 3})
    done = await finished(app, alice, started["id"])
    assert done["status"] == "SUCCEEDED"
    listed = (await alice.gql('{ nodeType(name: "set", version: 1) { deprecated } }'))["nodeType"]
    assert listed["deprecated"].startswith("version 2 converts each field")
    latest = (await alice.gql('{ nodeType(name: "set") { version deprecated } }'))["nodeType"]
    assert latest == {"version": 2, "deprecated": None}
