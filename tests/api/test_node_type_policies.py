"""Node type policies: types disabled server-wide (by the setting or an admin) or in one
workspace (by its owner), shown in the catalog with why, refusing publish, activation and new
executions of the workflows that use them, recorded with who and when."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from engine.nodes.webhook import webhook_path
from server.app import create_app
from server.settings import InvalidSettingsError, Settings, load_settings
from storage import accounts, schedules
from storage.db import Database
from storage.models import Execution, Membership, NodeTypePolicyChange, ScheduleTick
from storage.recorder import GroupCommitWriter
from tests.api.test_executions import EXECUTE, create, execute, finished
from tests.api.test_schedules import schedule_row, scheduled
from tests.api.test_webhooks import ACTIVATE, PUBLISH, hook_workflow
from tests.conftest import Caller, MakeCaller
from tests.factories import edge, node
from tests.live import serve
from tests.polling import until

SET_ENABLED = """
mutation($name: String!, $enabled: Boolean!, $ws: ID, $reason: String) {
  setNodeTypeEnabled(name: $name, enabled: $enabled, workspaceId: $ws, reason: $reason) {
    __typename
    ... on NodeType { name enabled disabledReason }
    ... on ValidationError { message problems { code field message } }
    ... on NotFoundError { message }
    ... on ForbiddenError { message }
  }
}
"""

CATALOG = """
query($ws: ID, $all: Boolean! = false) {
  nodeTypes(workspaceId: $ws, includeDisabled: $all) { name enabled disabledReason }
}
"""

CHANGES = """
query($ws: ID) {
  nodeTypePolicyChanges(workspaceId: $ws) {
    nodeType scope workspaceId enabled reason changedBy changedAt
  }
}
"""

WORKFLOW_ISSUES = """
query($id: ID!) { workflow(id: $id) { runnable nodes { id issues { code field message } } } }
"""


async def set_enabled(caller: Caller, name: str, enabled: bool, **variables: Any) -> Any:
    data = await caller.gql(SET_ENABLED, {"name": name, "enabled": enabled, **variables})
    return data["setNodeTypeEnabled"]


async def workspace_of(caller: Caller) -> str:
    data = await caller.gql("{ viewer { personalWorkspace { id } } }")
    return str(data["viewer"]["personalWorkspace"]["id"])


async def catalog(caller: Caller, **variables: Any) -> dict[str, dict[str, Any]]:
    data = await caller.gql(CATALOG, variables)
    return {entry["name"]: entry for entry in data["nodeTypes"]}


def codes(result: dict[str, Any]) -> list[tuple[str, str | None]]:
    assert result["__typename"] == "ValidationError", result
    return [(problem["code"], problem.get("field")) for problem in result["problems"]]


async def noop_workflow(caller: Caller) -> str:
    return await create(
        caller,
        [node("start", "Start", "manual_trigger"), node("n", "N", "noop")],
        [edge("start", "n")],
    )


@pytest.fixture
async def admin(make_caller: MakeCaller) -> Caller:
    return await make_caller("root", admin=True)


async def test_an_admin_disables_a_type_server_wide_and_the_catalog_says_why(
    admin: Caller, alice: Caller
) -> None:
    changed = await set_enabled(admin, "noop", False, reason="being replaced")
    assert changed["__typename"] == "NodeType" and changed["enabled"] is False, changed
    assert "disabled on this server by root" in changed["disabledReason"]
    assert changed["disabledReason"].endswith(": being replaced")
    # A palette leaves it out; an editor asking for every type sees it disabled, with why.
    assert "noop" not in await catalog(alice)
    everything = await catalog(alice, all=True)
    assert everything["noop"]["enabled"] is False
    assert everything["noop"]["disabledReason"] == changed["disabledReason"]
    assert everything["set"] == {"name": "set", "enabled": True, "disabledReason": None}
    one = await alice.gql('{ nodeType(name: "noop") { enabled disabledReason } }')
    assert one["nodeType"]["enabled"] is False
    # Enabled again: back in the palette; both changes recorded, newest first.
    again = await set_enabled(admin, "noop", True)
    assert again == {
        "__typename": "NodeType",
        "name": "noop",
        "enabled": True,
        "disabledReason": None,
    }
    assert "noop" in await catalog(alice)
    changes = (await admin.gql(CHANGES))["nodeTypePolicyChanges"]
    assert [
        (c["nodeType"], c["scope"], c["enabled"], c["reason"], c["changedBy"]) for c in changes
    ] == [
        ("noop", "SERVER", True, None, "root"),
        ("noop", "SERVER", False, "being replaced", "root"),
    ]
    assert all(change["changedAt"] for change in changes)
    # Server-wide changes are an admin's to see.
    assert (await alice.gql(CHANGES))["nodeTypePolicyChanges"] == []


async def test_a_change_to_the_same_state_records_nothing(
    admin: Caller, database: Database
) -> None:
    await set_enabled(admin, "noop", True)  # enabled already
    await set_enabled(admin, "noop", False)
    await set_enabled(admin, "noop", False)
    async with database.session() as session:
        rows = (await session.exec(select(NodeTypePolicyChange))).all()
    assert [(row.node_type, row.enabled) for row in rows] == [("noop", False)]


async def test_concurrent_changes_record_one_change_each_way(
    admin: Caller, database: Database
) -> None:
    for enabled in (False, True):
        answers = await asyncio.gather(
            *(admin.post(SET_ENABLED, {"name": "noop", "enabled": enabled}) for _ in range(4))
        )
        assert all("errors" not in answer.json() for answer in answers), answers
    async with database.session() as session:
        rows = (await session.exec(select(NodeTypePolicyChange))).all()
    assert sorted(row.enabled for row in rows) == [False, True]


async def test_a_workspace_owner_disables_a_type_in_their_workspace_only(
    app: Any, alice: Caller, bob: Caller
) -> None:
    workspace = await workspace_of(alice)
    theirs = await noop_workflow(alice)
    others = await noop_workflow(bob)
    changed = await set_enabled(alice, "noop", False, ws=workspace, reason="no no-ops here")
    assert changed["enabled"] is False
    assert "disabled in this workspace by alice" in changed["disabledReason"]
    # The workflow of the workspace gets the issue at once (not only when saved again).
    shown = (await alice.gql(WORKFLOW_ISSUES, {"id": theirs}))["workflow"]
    assert shown["runnable"] is False
    issues = {n["id"]: [(i["code"], i["field"]) for i in n["issues"]] for n in shown["nodes"]}
    assert issues == {"start": [], "n": [("NODE_TYPE_DISABLED", "type")]}
    refused = await execute(alice, theirs)
    assert codes(refused) == [("NODE_TYPE_DISABLED", "type")]
    assert "no no-ops here" in refused["problems"][0]["message"]
    published = (await alice.gql(PUBLISH, {"id": theirs, "v": 1}))["publishWorkflow"]
    assert codes(published) == [("NODE_TYPE_DISABLED", "type")]
    # Bob's workspace is not concerned.
    assert (await catalog(bob))["noop"]["enabled"] is True
    ran = await execute(bob, others)
    assert (await finished(app, bob, ran["id"]))["status"] == "SUCCEEDED"
    # The workspace's catalog says so; the server-wide one does not.
    assert (await catalog(alice, ws=workspace, all=True))["noop"]["enabled"] is False
    assert (await catalog(alice))["noop"]["enabled"] is True
    changes = (await alice.gql(CHANGES, {"ws": workspace}))["nodeTypePolicyChanges"]
    assert [(c["scope"], c["workspaceId"], c["changedBy"]) for c in changes] == [
        ("WORKSPACE", workspace, "alice")
    ]
    # Enabled again, it runs.
    await set_enabled(alice, "noop", True, ws=workspace)
    ran = await execute(alice, theirs)
    assert (await finished(app, alice, ran["id"]))["status"] == "SUCCEEDED"


async def test_an_execution_already_running_finishes(app: Any, alice: Caller) -> None:
    workspace = await workspace_of(alice)
    nodes = [
        node("start", "Start", "manual_trigger"),
        node("wait", "Wait", "wait", parameters={"amount": 0.5, "unit": "seconds"}),
        node("after", "After", "noop"),
    ]
    workflow_id = await create(alice, nodes, [edge("start", "wait"), edge("wait", "after")])
    started = await execute(alice, workflow_id)
    assert started["__typename"] == "Execution", started
    await set_enabled(alice, "noop", False, ws=workspace)
    done = await finished(app, alice, started["id"])
    assert done["status"] == "SUCCEEDED", done["error"]
    assert codes(await execute(alice, workflow_id)) == [("NODE_TYPE_DISABLED", "type")]


async def test_a_retry_is_a_new_execution_and_is_refused(app: Any, alice: Caller) -> None:
    workflow_id = await noop_workflow(alice)
    ran = await execute(alice, workflow_id)
    await finished(app, alice, ran["id"])
    await set_enabled(alice, "noop", False, ws=await workspace_of(alice))
    retry = await alice.gql(
        "mutation($id: ID!) { retryExecution(id: $id) { __typename "
        "... on ValidationError { problems { code field } } } }",
        {"id": ran["id"]},
    )
    assert codes(retry["retryExecution"]) == [("NODE_TYPE_DISABLED", "type")]


async def test_a_disabled_node_of_a_disabled_type_does_not_refuse(app: Any, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger"), node("n", "N", "noop", disabled=True)],
        [edge("start", "n")],
    )
    await set_enabled(alice, "noop", False, ws=await workspace_of(alice))
    ran = await execute(alice, workflow_id)
    assert (await finished(app, alice, ran["id"]))["status"] == "SUCCEEDED"


async def test_activation_is_refused_while_the_published_version_uses_a_disabled_type(
    alice: Caller,
) -> None:
    workflow_id = await noop_workflow(alice)
    assert (await alice.gql(PUBLISH, {"id": workflow_id, "v": 1}))["publishWorkflow"][
        "__typename"
    ] == "Workflow"
    await set_enabled(alice, "noop", False, ws=await workspace_of(alice))
    result = (await alice.gql(ACTIVATE, {"id": workflow_id, "active": True}))["setWorkflowActive"]
    assert codes(result) == [("NODE_TYPE_DISABLED", "type")]
    # Deactivating is never refused.
    result = (await alice.gql(ACTIVATE, {"id": workflow_id, "active": False}))["setWorkflowActive"]
    assert result["__typename"] == "Workflow"


async def test_a_schedule_stops_firing_and_resumes_when_enabled_again(
    app: Any, alice: Caller, database: Database
) -> None:
    workflow_id = await scheduled(alice, {"cron": "*/5 * * * *"})
    await set_enabled(alice, "noop", False, ws=await workspace_of(alice))
    policies = app.state.services.policies
    row = await schedule_row(database, workflow_id)
    assert row is not None
    due = row.next_at
    # The tick passes without an execution, and the schedule moves on.
    assert (
        await schedules.fire_due(
            database, GroupCommitWriter(database), due, policy=policies.current
        )
        == []
    )
    async with database.session() as session:
        ticks = (await session.exec(select(ScheduleTick))).all()
        runs = (await session.exec(select(Execution))).all()
    assert [(tick.scheduled_at, tick.execution_id) for tick in ticks] == [(due, None)]
    assert runs == []
    shown = (await alice.gql(WORKFLOW_ISSUES, {"id": workflow_id}))["workflow"]
    assert [i["code"] for n in shown["nodes"] for i in n["issues"]] == ["NODE_TYPE_DISABLED"]
    # Enabled again: the next tick fires.
    await set_enabled(alice, "noop", True, ws=await workspace_of(alice))
    following = due + timedelta(minutes=5)
    fired = await schedules.fire_due(
        database, GroupCommitWriter(database), following, policy=policies.current
    )
    assert [execution.workflow_id for execution in fired] == [workflow_id]


async def test_bad_changes_are_refused_and_record_nothing(
    admin: Caller, alice: Caller, bob: Caller, database: Database, db_state: Any
) -> None:
    before = await db_state()
    unknown = await set_enabled(admin, "no_such_type", False)
    assert codes(unknown) == [("UNKNOWN_NODE_TYPE", "name")]
    too_long = await set_enabled(admin, "noop", False, reason="x" * 501)
    assert codes(too_long) == [("INVALID_REASON", "reason")]
    not_storable = await set_enabled(admin, "noop", False, reason="a\x00b")
    assert codes(not_storable) == [("INVALID_REASON", "reason")]
    server_wide = await set_enabled(alice, "noop", False)
    assert server_wide["__typename"] == "ForbiddenError"
    assert "admin" in server_wide["message"]
    not_theirs = await set_enabled(bob, "noop", False, ws=await workspace_of(alice))
    assert not_theirs["__typename"] == "NotFoundError"
    for workspace in ("no-such-workspace", "a\x00b", "x" * 300):
        missing = await set_enabled(admin, "noop", False, ws=workspace)
        assert missing["__typename"] == "NotFoundError", missing
    assert await db_state() == before
    # A member who is not the owner may not either.
    workspace = await workspace_of(alice)
    async with database.transaction() as session:
        session.add(Membership(workspace_id=workspace, user_id=bob.user_id, role="editor"))
    member = await set_enabled(bob, "noop", False, ws=workspace)
    assert member["__typename"] == "ForbiddenError"
    assert "owner" in member["message"]
    # An admin may, in any workspace.
    assert (await set_enabled(admin, "noop", False, ws=workspace))["enabled"] is False


async def test_another_workspace_cannot_be_looked_at(alice: Caller, bob: Caller) -> None:
    workspace = await workspace_of(alice)
    await catalog(alice, ws=workspace)  # answered, and kept for identical queries
    body = (await bob.post(CATALOG, {"ws": workspace})).json()
    assert body["errors"][0]["extensions"]["field"] == "workspaceId", body
    body = (await bob.post(CHANGES, {"ws": workspace})).json()
    assert body["errors"][0]["extensions"]["field"] == "workspaceId", body
    body = (await bob.post("{ nodeTypePolicyChanges(first: 0) { nodeType } }")).json()
    assert body["errors"][0]["extensions"]["field"] == "first", body


async def test_a_kept_catalog_answer_follows_policy_changes(admin: Caller, alice: Caller) -> None:
    assert (await catalog(alice, all=True))["noop"]["enabled"] is True
    assert (await catalog(alice, all=True))["noop"]["enabled"] is True  # the kept answer
    await set_enabled(admin, "noop", False)
    assert (await catalog(alice, all=True))["noop"]["enabled"] is False


async def test_a_webhook_answers_503_while_a_type_is_disabled_then_runs_again(
    http: Any, alice: Caller
) -> None:
    workflow_id = await hook_workflow(alice, {}, after=[node("n", "N", "noop")])
    url = f"/webhook/{webhook_path(workflow_id, 'hook', {})}"
    workspace = await workspace_of(alice)
    await set_enabled(alice, "noop", False, ws=workspace, reason="paused")
    refused = await http.post(url, json={"a": 1})
    assert refused.status_code == 503, refused.text
    body = refused.json()
    assert (body["code"], body["nodeId"]) == ("NODE_TYPE_DISABLED", "n")
    # Who disabled it and why are the workspace's to see, not the caller's.
    assert "paused" not in body["error"] and "alice" not in body["error"]
    assert (await alice.gql("{ executions { edges { node { id } } } }"))["executions"][
        "edges"
    ] == []
    await set_enabled(alice, "noop", True, ws=workspace)
    assert (await http.post(url, json={"a": 1})).status_code == 202


async def test_a_call_of_a_workflow_using_a_disabled_type_fails_the_calling_node(
    app: Any, alice: Caller
) -> None:
    called_nodes = [node("called", "Called", "execute_workflow_trigger"), node("n", "N", "noop")]
    called = await create(alice, called_nodes, [edge("called", "n")])
    calling = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "call",
                "Call",
                "execute_workflow",
                parameters={"workflowId": called, "source": "draft"},
            ),
        ],
        [edge("start", "call")],
    )
    # The calling workflow uses no disabled type: it starts, and its call is refused.
    await set_enabled(alice, "noop", False, ws=await workspace_of(alice))
    ran = await execute(alice, calling)
    done = await finished(app, alice, ran["id"])
    assert done["status"] == "FAILED"
    (call,) = [run for run in done["nodeRuns"] if run["nodeId"] == "call"]
    assert call["error"]["type"] == "NODE_TYPE_DISABLED", call["error"]
    assert "node 'n'" in call["error"]["message"], call["error"]


# The setting


async def test_the_setting_disables_types_server_wide(
    database: Database, registry: Any, make_caller: MakeCaller
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, token_cache_s=0.0, secret_key="k", disabled_node_types=["noop"]
    )
    app = create_app(settings, database=database, registry=registry)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://loom.test"
    ) as client:
        admin = await make_caller("root", admin=True)
        admin.http = client
        entry = (await catalog(admin, all=True))["noop"]
        assert entry["enabled"] is False
        assert "LOOM_DISABLED_NODE_TYPES" in entry["disabledReason"]
        # Only the operator can enable it again.
        refused = await set_enabled(admin, "noop", True)
        assert codes(refused) == [("DISABLED_BY_SETTING", "enabled")]
        workflow_id = await noop_workflow(admin)
        data = await admin.gql(EXECUTE, {"id": workflow_id})
        assert codes(data["executeWorkflow"]) == [("NODE_TYPE_DISABLED", "type")]


def test_the_setting_names_real_node_types(
    monkeypatch: pytest.MonkeyPatch, database: Database, registry: Any
) -> None:
    monkeypatch.setenv("LOOM_DISABLED_NODE_TYPES", "noop,Not A Name")
    with pytest.raises(InvalidSettingsError) as malformed:
        load_settings(_env_file=None)
    assert "LOOM_DISABLED_NODE_TYPES" in str(malformed.value)
    assert "'Not A Name' is not a node type name" in str(malformed.value)
    monkeypatch.setenv("LOOM_DISABLED_NODE_TYPES", "noop, htp_request")
    settings = load_settings(_env_file=None)
    assert settings.disabled_node_types == ["noop", "htp_request"]
    with pytest.raises(InvalidSettingsError) as unknown:
        create_app(settings, database=database, registry=registry)
    assert str(unknown.value) == (
        "LOOM_DISABLED_NODE_TYPES: 'htp_request' is not among the installed node types "
        "(`loom node-types list` lists them)"
    )


async def test_a_change_reaches_another_process_within_the_refresh(
    database: Database, registry: Any, admin: Caller, alice: Caller
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, token_cache_s=0.0, secret_key="k", node_type_policy_refresh_s=0.05
    )
    other = create_app(settings, database=database, registry=registry)
    policies = other.state.services.policies
    await policies.reload()
    refreshing = asyncio.create_task(policies.keep_fresh())
    try:
        assert policies.current.disabled("noop", None) is None
        await set_enabled(admin, "noop", False, reason="elsewhere")
        why = await until(
            lambda: policies.current.disabled("noop", None), what="the change in the other process"
        )
        assert why.reason == "elsewhere"
    finally:
        refreshing.cancel()


async def test_the_audit_keeps_the_name_of_a_deleted_user(
    admin: Caller, database: Database
) -> None:
    await set_enabled(admin, "noop", False)
    async with database.transaction() as session:
        user = await accounts.get_user_by_name(session, "root")
        assert user is not None
        await session.delete(user)
    async with database.session() as session:
        (row,) = (await session.exec(select(NodeTypePolicyChange))).all()
    assert (row.changed_by, row.changed_by_id) == ("root", None)


async def test_a_starting_server_reads_the_policies_in_force(
    database: Database, registry: Any, settings: Settings, admin: Caller
) -> None:
    await set_enabled(admin, "noop", False, reason="from before the start")
    starting = create_app(settings, database=database, registry=registry)
    assert starting.state.services.policies.current.disabled("noop", None) is None
    async with serve(starting) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base) as client:
            response = await client.post(
                "/graphql",
                json={"query": '{ nodeType(name: "noop") { enabled disabledReason } }'},
                headers={"Authorization": f"Bearer {admin.token}"},
            )
    entry = response.json()["data"]["nodeType"]
    assert entry["enabled"] is False
    assert entry["disabledReason"].endswith(": from before the start")
