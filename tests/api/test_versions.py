"""Publishing writes immutable snapshots; activation switches triggers and changes no version."""

from __future__ import annotations

import asyncio

from tests.factories import (
    ADD_NODE,
    GET,
    GET_VERSION,
    GET_WITH_VERSIONS,
    LIST,
    PUBLISH,
    SET_ACTIVE,
    UPDATE,
    UPDATE_NODE,
    create_workflow,
    edge,
    node,
    only,
    problem_codes,
    publish_workflow,
    workflow_input,
)


async def _snapshot_rows(db_state):
    return (await db_state())["workflow_versions"]


async def test_plain_edits_write_no_snapshot(alice, db_state):
    workflow = await create_workflow(alice)
    wf = workflow["id"]
    only(await alice.gql(UPDATE, {"id": wf, "input": workflow_input("v2"), "v": 1}))
    only(await alice.gql(ADD_NODE, {"wf": wf, "node": node("x", "X"), "v": 2}))
    got = (await alice.gql(GET_WITH_VERSIONS, {"id": wf}))["workflow"]
    assert got["version"] == 3
    assert got["versions"] == []
    assert got["publishedVersion"] is None
    assert await _snapshot_rows(db_state) == []
    assert (await alice.gql(GET_VERSION, {"id": wf, "version": 1}))["workflowVersion"] is None


async def test_publish_writes_one_snapshot_of_the_current_draft(alice, db_state):
    workflow = await create_workflow(alice, "Pub", settings={"timezone": "UTC"})
    wf = workflow["id"]
    updated = only(
        await alice.gql(
            UPDATE, {"id": wf, "input": workflow_input("Pub", settings={"timezone": "UTC"}), "v": 1}
        )
    )
    published = await publish_workflow(alice, updated)
    assert published["publishedVersion"] == 2
    assert published["version"] == 2  # publishing is not an edit of the draft
    assert published["active"] is False
    assert len(await _snapshot_rows(db_state)) == 1
    snapshot = (await alice.gql(GET_VERSION, {"id": wf, "version": 2}))["workflowVersion"]
    assert snapshot["workflowId"] == wf
    assert snapshot["version"] == 2
    assert snapshot["name"] == "Pub"
    assert snapshot["settings"] == {"timezone": "UTC"}
    assert [n["id"] for n in snapshot["nodes"]] == [n["id"] for n in updated["nodes"]]
    assert snapshot["edges"] == updated["edges"]
    listed = (await alice.gql(GET_WITH_VERSIONS, {"id": wf}))["workflow"]
    assert listed["versions"] == [snapshot]
    assert (await alice.gql(GET_VERSION, {"id": wf, "version": 1}))["workflowVersion"] is None


async def test_publishing_the_same_version_twice_keeps_one_snapshot(alice, db_state):
    workflow = await create_workflow(alice)
    first = await publish_workflow(alice, workflow)
    rows = await _snapshot_rows(db_state)
    second = await publish_workflow(alice, workflow)
    assert first["publishedVersion"] == second["publishedVersion"] == 1
    assert await _snapshot_rows(db_state) == rows


async def test_concurrent_publishes_write_one_snapshot(alice, db_state):
    workflow = await create_workflow(alice)
    results = await asyncio.gather(
        *(alice.gql(PUBLISH, {"id": workflow["id"], "v": 1}) for _ in range(3))
    )
    assert [only(r)["publishedVersion"] for r in results] == [1, 1, 1]
    assert len(await _snapshot_rows(db_state)) == 1


async def test_editing_after_publish_leaves_the_snapshot_alone(alice):
    workflow = await create_workflow(alice, "Before")
    wf = workflow["id"]
    await publish_workflow(alice, workflow)
    snapshot = (await alice.gql(GET_VERSION, {"id": wf, "version": 1}))["workflowVersion"]
    changed = node("n1", "Changed", "noop")
    only(await alice.gql(UPDATE_NODE, {"wf": wf, "nodeId": "n1", "node": changed, "v": 1}))
    renamed = only(await alice.gql(UPDATE, {"id": wf, "input": workflow_input("After"), "v": 2}))
    assert renamed["version"] == 3
    assert renamed["publishedVersion"] == 1
    again = (await alice.gql(GET_VERSION, {"id": wf, "version": 1}))["workflowVersion"]
    assert again == snapshot
    assert again["name"] == "Before"
    republished = await publish_workflow(alice, renamed)
    assert republished["publishedVersion"] == 3
    got = (await alice.gql(GET_WITH_VERSIONS, {"id": wf}))["workflow"]
    assert [v["version"] for v in got["versions"]] == [3, 1]
    assert got["versions"][0]["name"] == "After"
    assert got["versions"][1] == snapshot


async def test_publish_with_stale_version_is_a_conflict(alice, db_state):
    workflow = await create_workflow(alice)
    only(await alice.gql(UPDATE, {"id": workflow["id"], "input": workflow_input(), "v": 1}))
    before = await db_state()
    result = only(await alice.gql(PUBLISH, {"id": workflow["id"], "v": 1}))
    assert result["__typename"] == "VersionConflictError"
    assert (result["expectedVersion"], result["currentVersion"]) == (1, 2)
    assert await db_state() == before


async def test_publish_with_parameter_issues_is_refused(alice, db_state):
    workflow = await create_workflow(
        alice,
        nodes=[node("t", "Start", "manual_trigger"), node("lim", "Limit", "limit")],
        edges=[edge("t", "lim")],
    )
    assert workflow["nodes"][1]["issues"][0]["severity"] == "PARAMETER"
    before = await db_state()
    result = only(await alice.gql(PUBLISH, {"id": workflow["id"], "v": 1}))
    assert problem_codes(result) == ["MISSING_PARAMETER"]
    assert result["problems"][0]["nodeId"] == "lim"
    assert result["problems"][0]["severity"] == "PARAMETER"
    assert await db_state() == before
    fixed = node("lim", "Limit", "limit", parameters={"maxItems": 2})
    repaired = only(
        await alice.gql(UPDATE_NODE, {"wf": workflow["id"], "nodeId": "lim", "node": fixed, "v": 1})
    )
    published = await publish_workflow(alice, repaired)
    assert published["publishedVersion"] == 2


async def test_publish_missing_workflow_is_not_found(alice):
    missing = "00000000-0000-4000-8000-00000000abcd"
    result = only(await alice.gql(PUBLISH, {"id": missing, "v": 1}))
    assert result["__typename"] == "NotFoundError"
    assert result["id"] == missing


async def test_activation_requires_a_published_version(alice, db_state):
    workflow = await create_workflow(alice)
    before = await db_state()
    result = only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": True}))
    assert problem_codes(result) == ["NOT_PUBLISHED"]
    assert result["problems"][0]["field"] == "active"
    assert await db_state() == before


async def test_activation_changes_no_version(alice, db_state):
    workflow = await create_workflow(alice)
    await publish_workflow(alice, workflow)
    rows = await _snapshot_rows(db_state)
    active = only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": True}))
    assert active["__typename"] == "Workflow"
    assert active["active"] is True
    assert (active["version"], active["publishedVersion"]) == (1, 1)
    listed = await alice.gql(LIST, {"filter": {"active": True}})
    assert [e["node"]["id"] for e in listed["workflows"]["edges"]] == [workflow["id"]]
    # Activation is not an edit: the draft's expected version is still 1.
    edited = only(await alice.gql(ADD_NODE, {"wf": workflow["id"], "node": node("x"), "v": 1}))
    assert edited["version"] == 2
    assert edited["active"] is True
    inactive = only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": False}))
    assert inactive["active"] is False
    assert (inactive["version"], inactive["publishedVersion"]) == (2, 1)
    assert await _snapshot_rows(db_state) == rows


async def test_deactivating_an_unpublished_workflow_is_harmless(alice):
    workflow = await create_workflow(alice)
    result = only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": False}))
    assert result["__typename"] == "Workflow"
    assert (result["active"], result["version"]) == (False, 1)
    assert (await alice.gql(GET, {"id": workflow["id"]}))["workflow"]["version"] == 1


async def test_set_active_on_missing_workflow_is_not_found(alice):
    missing = "00000000-0000-4000-8000-00000000dcba"
    for active in (True, False):
        result = only(await alice.gql(SET_ACTIVE, {"id": missing, "active": active}))
        assert result["__typename"] == "NotFoundError"


async def test_workflow_version_of_a_missing_workflow_is_null(alice):
    got = await alice.gql(GET_VERSION, {"id": "00000000-0000-4000-8000-000000000001", "version": 1})
    assert got["workflowVersion"] is None
