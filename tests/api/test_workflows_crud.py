"""Create, read, update, delete and duplicate whole workflows."""

from __future__ import annotations

import asyncio

from tests.factories import (
    CREATE,
    DELETE,
    DUPLICATE,
    GET,
    GET_WITH_VERSIONS,
    LIST,
    UPDATE,
    chain,
    create_workflow,
    edge,
    node,
    only,
    problem_codes,
    publish_workflow,
    workflow_input,
)

FULL_NODE = node(
    "http",
    "Fetch",
    "set",
    typeVersion=2,
    parameters={"fields": [{"name": "greeting", "value": "hi {{ $json.name }}"}]},
    position={"x": 120.5, "y": -40},
    disabled=True,
    notes="calls nobody",
    retry={"maxAttempts": 4, "backoffSeconds": 0.5, "backoffFactor": 3, "maxBackoffSeconds": 9},
    timeoutSeconds=12.5,
    onError="CONTINUE",
)


async def test_create_returns_version_one_with_every_field(alice):
    created = await create_workflow(
        alice,
        "Nightly sync",
        description="copies rows",
        tags=["etl", "nightly"],
        settings={"timezone": "Europe/Berlin", "executionTimeoutSeconds": 60},
        nodes=[node("t", "Start", "manual_trigger"), FULL_NODE],
        edges=[edge("t", "http")],
    )
    assert created["version"] == 1
    assert created["publishedVersion"] is None
    assert created["active"] is False
    assert created["name"] == "Nightly sync"
    assert created["description"] == "copies rows"
    assert created["tags"] == ["etl", "nightly"]
    assert created["settings"] == {"timezone": "Europe/Berlin", "executionTimeoutSeconds": 60}
    stored = created["nodes"][1]
    assert stored == {
        "id": "http",
        "name": "Fetch",
        "type": "set",
        "typeVersion": 2,
        "parameters": FULL_NODE["parameters"],
        "position": {"x": 120.5, "y": -40.0},
        "disabled": True,
        "notes": "calls nobody",
        "retry": {
            "maxAttempts": 4,
            "backoffSeconds": 0.5,
            "backoffFactor": 3.0,
            "maxBackoffSeconds": 9.0,
        },
        "timeoutSeconds": 12.5,
        "onError": "CONTINUE",
        "credentials": {},
        "issues": [],
    }
    assert created["edges"] == [
        {
            "id": "t:main->http:main",
            "source": "t",
            "sourceOutput": "main",
            "target": "http",
            "targetInput": "main",
        }
    ]
    got = (await alice.gql(GET, {"id": created["id"]}))["workflow"]
    assert got == {key: created[key] for key in got}


async def test_node_defaults_are_filled_in(alice):
    created = await create_workflow(alice, nodes=[node("a", "A", "manual_trigger")], edges=[])
    assert created["nodes"][0] | {"issues": []} == {
        "id": "a",
        "name": "A",
        "type": "manual_trigger",
        "typeVersion": 1,  # the type's latest, written down (docs/node-types.md, Versions)
        "parameters": {},
        "position": {"x": 0.0, "y": 0.0},
        "disabled": False,
        "notes": "",
        "retry": None,
        "timeoutSeconds": None,
        "onError": "STOP",
        "credentials": {},
        "issues": [],
    }


async def test_created_workflow_belongs_to_the_callers_workspace(alice):
    created = await create_workflow(alice)
    data = await alice.gql(
        """query($id: ID!) {
          viewer { id personalWorkspace { id } }
          workflow(id: $id) { workspace { id name } createdBy { id name } }
        }""",
        {"id": created["id"]},
    )
    assert data["workflow"]["workspace"]["id"] == data["viewer"]["personalWorkspace"]["id"]
    assert data["workflow"]["createdBy"] == {"id": alice.user_id, "name": "alice"}


async def test_unknown_id_reads_as_null(alice):
    assert (await alice.gql(GET, {"id": "00000000-0000-0000-0000-000000000000"}))[
        "workflow"
    ] is None


async def test_update_replaces_the_draft_and_bumps_the_version(alice):
    created = await create_workflow(alice, "Old", tags=["old"])
    new_input = workflow_input(
        "New", description="d", tags=["new"], settings={"maxConcurrentExecutions": 2}, **chain(4)
    )
    updated = only(await alice.gql(UPDATE, {"id": created["id"], "input": new_input, "v": 1}))
    assert updated["__typename"] == "Workflow"
    assert updated["version"] == 2
    assert updated["name"] == "New"
    assert updated["description"] == "d"
    assert updated["tags"] == ["new"]
    assert updated["settings"] == {"maxConcurrentExecutions": 2}
    assert [n["id"] for n in updated["nodes"]] == ["n0", "n1", "n2", "n3"]
    assert updated["createdAt"] == created["createdAt"]
    assert updated["updatedAt"] > created["updatedAt"]
    again = only(await alice.gql(UPDATE, {"id": created["id"], "input": new_input, "v": 2}))
    assert again["version"] == 3
    # Tags are indexed separately: the old tag no longer finds the workflow.
    old = await alice.gql(LIST, {"filter": {"tag": "old"}})
    new = await alice.gql(LIST, {"filter": {"tag": "new"}})
    assert old["workflows"]["edges"] == []
    assert [e["node"]["id"] for e in new["workflows"]["edges"]] == [created["id"]]


async def test_stale_expected_version_is_a_conflict_and_changes_nothing(alice, db_state):
    created = await create_workflow(alice)
    only(await alice.gql(UPDATE, {"id": created["id"], "input": workflow_input("v2"), "v": 1}))
    before = await db_state()
    result = only(
        await alice.gql(UPDATE, {"id": created["id"], "input": workflow_input("lost"), "v": 1})
    )
    assert result["__typename"] == "VersionConflictError"
    assert result["expectedVersion"] == 1
    assert result["currentVersion"] == 2
    assert "version 2" in result["message"]
    assert await db_state() == before
    assert (await alice.gql(GET, {"id": created["id"]}))["workflow"]["name"] == "v2"


async def test_future_expected_version_is_a_conflict_too(alice, db_state):
    created = await create_workflow(alice)
    before = await db_state()
    result = only(
        await alice.gql(UPDATE, {"id": created["id"], "input": workflow_input("x"), "v": 7})
    )
    assert result["__typename"] == "VersionConflictError"
    assert (result["expectedVersion"], result["currentVersion"]) == (7, 1)
    assert await db_state() == before


async def test_concurrent_updates_from_one_version_never_both_win(alice):
    created = await create_workflow(alice)
    results = await asyncio.gather(
        *(
            alice.gql(UPDATE, {"id": created["id"], "input": workflow_input(f"w{i}"), "v": 1})
            for i in range(4)
        )
    )
    kinds = sorted(only(data)["__typename"] for data in results)
    assert kinds == ["VersionConflictError"] * 3 + ["Workflow"]
    winner = next(only(d) for d in results if only(d)["__typename"] == "Workflow")
    stored = (await alice.gql(GET, {"id": created["id"]}))["workflow"]
    assert stored["version"] == 2
    assert stored["name"] == winner["name"]


async def test_update_of_a_missing_workflow_is_not_found(alice, db_state):
    before = await db_state()
    missing = "5b0c9c5e-1111-4222-8333-944445555666"
    result = only(await alice.gql(UPDATE, {"id": missing, "input": workflow_input(), "v": 1}))
    assert result == {"__typename": "NotFoundError", "message": result["message"], "id": missing}
    assert await db_state() == before


async def test_invalid_update_changes_nothing(alice, db_state):
    created = await create_workflow(alice)
    before = await db_state()
    bad = workflow_input(nodes=[node("a"), node("a", "Other")], edges=[])
    result = only(await alice.gql(UPDATE, {"id": created["id"], "input": bad, "v": 1}))
    assert "DUPLICATE_NODE_ID" in problem_codes(result)
    assert await db_state() == before


async def test_delete_removes_the_workflow_and_its_versions(alice, db_state):
    created = await create_workflow(alice)
    await publish_workflow(alice, created)
    kept = await create_workflow(alice, "kept")
    result = only(await alice.gql(DELETE, {"id": created["id"]}))
    assert result == {"__typename": "Deleted", "id": created["id"]}
    assert (await alice.gql(GET, {"id": created["id"]}))["workflow"] is None
    state = await db_state()
    assert all(created["id"] not in row for row in state["workflow_versions"])
    assert all(created["id"] not in row for row in state["workflow_tags"])
    assert len(state["workflows"]) == 1
    assert (await alice.gql(GET, {"id": kept["id"]}))["workflow"]["name"] == "kept"
    again = only(await alice.gql(DELETE, {"id": created["id"]}))
    assert again["__typename"] == "NotFoundError"
    assert again["id"] == created["id"]


async def test_duplicate_copies_the_draft_into_a_new_unpublished_workflow(alice):
    source = await create_workflow(
        alice,
        "Source",
        description="desc",
        tags=["a"],
        settings={"timezone": "UTC"},
        nodes=[node("t", "Start", "manual_trigger"), node("l", "Limit", "limit")],
        edges=[edge("t", "l")],
    )
    copy = only(await alice.gql(DUPLICATE, {"id": source["id"]}))
    assert copy["__typename"] == "Workflow"
    assert copy["id"] != source["id"]
    assert copy["name"] == "Source (copy)"
    assert copy["version"] == 1
    assert copy["publishedVersion"] is None
    assert copy["active"] is False
    for key in ("description", "tags", "settings", "nodes", "edges"):
        assert copy[key] == source[key], key
    # Parameter issues travel with the nodes.
    assert [i["code"] for i in copy["nodes"][1]["issues"]] == ["MISSING_PARAMETER"]
    named = only(await alice.gql(DUPLICATE, {"id": source["id"], "name": "  Other  "}))
    assert named["name"] == "Other"
    unchanged = (await alice.gql(GET, {"id": source["id"]}))["workflow"]
    assert unchanged == {key: source[key] for key in unchanged}
    listed = await alice.gql(LIST, {})
    assert listed["workflows"]["totalCount"] == 3


async def test_duplicate_does_not_copy_versions_or_state(alice):
    source = await create_workflow(alice)
    await publish_workflow(alice, source)
    copy = only(await alice.gql(DUPLICATE, {"id": source["id"]}))
    got = (await alice.gql(GET_WITH_VERSIONS, {"id": copy["id"]}))["workflow"]
    assert got["versions"] == []
    assert got["publishedVersion"] is None


async def test_duplicate_with_a_bad_name_stores_nothing(alice, db_state):
    source = await create_workflow(alice)
    before = await db_state()
    for name in ("", "   ", "x" * 256, "bad\x00name"):
        result = only(await alice.gql(DUPLICATE, {"id": source["id"], "name": name}))
        assert result["__typename"] == "ValidationError", name
    assert await db_state() == before


async def test_duplicate_of_a_long_name_stays_within_the_limit(alice):
    source = await create_workflow(alice, "x" * 255)
    copy = only(await alice.gql(DUPLICATE, {"id": source["id"]}))
    assert copy["__typename"] == "Workflow"
    assert len(copy["name"]) == 255


async def test_create_is_listed_for_its_owner(alice):
    created = only(await alice.gql(CREATE, {"input": workflow_input("Listed")}))
    listed = await alice.gql(LIST, {})
    assert [e["node"]["id"] for e in listed["workflows"]["edges"]] == [created["id"]]


def _as_input(workflow):
    """A workflow as read, turned back into a WorkflowInput."""
    nodes = [{key: value for key, value in n.items() if key != "issues"} for n in workflow["nodes"]]
    edges = [{key: value for key, value in e.items() if key != "id"} for e in workflow["edges"]]
    return {
        "name": workflow["name"],
        "description": workflow["description"],
        "tags": workflow["tags"],
        "settings": workflow["settings"],
        "nodes": nodes,
        "edges": edges,
    }


async def test_a_read_workflow_saves_back_unchanged(alice):
    created = await create_workflow(
        alice, nodes=[node("t", "Start", "manual_trigger"), FULL_NODE], edges=[edge("t", "http")]
    )
    saved = only(
        await alice.gql(UPDATE, {"id": created["id"], "input": _as_input(created), "v": 1})
    )
    assert saved["version"] == 2
    for key in ("name", "description", "tags", "settings", "nodes", "edges"):
        assert saved[key] == created[key], key
