"""The audit log (issue 18, point 5): one record per change, in the change's transaction,
read through `auditLog` by a workspace's owners and admins or by server admins."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from storage.audit import AuditAction
from storage.db import Database
from storage.models import AuditEvent
from storage.retention import PruneRecord, RetentionPolicy, prune
from storage.types import utcnow
from tests.api.test_credentials import CREATE_CREDENTIAL, DELETE_CREDENTIAL, UPDATE_CREDENTIAL
from tests.api.test_declarative_types import CREATE_TYPE, DELETE_TYPE, UPDATE_TYPE
from tests.api.test_executions import EXECUTE, GET_EXECUTION, finished
from tests.api.test_export_import import EXPORT, IMPORT
from tests.api.test_node_type_policies import SET_ENABLED
from tests.api.test_partial_runs import EXECUTE_NODE, RUN_TO
from tests.api.test_roles import CANCEL, PING_TYPE, RETRY
from tests.api.test_scoped_tokens import CREATE_TOKEN, scoped
from tests.conftest import Caller, MakeCaller
from tests.factories import (
    ADD_EDGE,
    ADD_NODE,
    CREATE,
    DELETE,
    DUPLICATE,
    PIN_NODE_DATA,
    PUBLISH,
    REMOVE_EDGE,
    REMOVE_NODE,
    SET_ACTIVE,
    UNPIN_NODE_DATA,
    UPDATE,
    UPDATE_NODE,
    UPGRADE_NODE,
    edge,
    node,
    only,
    workflow_input,
)
from tests.live import serve
from tests.polling import until
from tests.teams import (
    ADD_MEMBER,
    CHANGE_ROLE,
    CREATE_IN,
    CREATE_WORKSPACE,
    DELETE_WORKSPACE,
    MOVE,
    REMOVE_MEMBER,
    RENAME_WORKSPACE,
    ROLES,
    SHARE,
    UNSHARE,
    team,
)

SECRET = "audit-s3cr3t-that-no-record-may-hold"
AUDIT_LOG = """
query($ws: ID, $first: Int, $after: String, $actor: ID, $action: String) {
  auditLog(workspaceId: $ws, first: $first, after: $after, actor: $actor, action: $action) {
    __typename
    ... on AuditEventConnection {
      edges { cursor node {
        id occurredAt workspaceId action targetKind targetId details
        actor { userId tokenId user { name } }
      } }
      pageInfo { hasNextPage endCursor }
    }
    ... on NotFoundError { message }
    ... on ForbiddenError { message }
  }
}
"""
REVOKE_TOKEN = (
    "mutation($id: ID!) { revokeApiToken(id: $id) { __typename ... on ApiToken { id } } }"
)
REVOKED = "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }"


async def _records(database: Database) -> list[AuditEvent]:
    async with database.session() as session:
        rows = await session.exec(
            select(AuditEvent).order_by(col(AuditEvent.occurred_at), col(AuditEvent.id))
        )
        return list(rows.all())


class Ledger:
    """The audit records a test has not looked at yet."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.seen: set[str] = set()

    async def new(self) -> list[AuditEvent]:
        fresh = [row for row in await _records(self.database) if row.id not in self.seen]
        self.seen |= {row.id for row in fresh}
        return fresh

    async def one(
        self, action: str, actor: Caller, target_kind: str, target_id: str | None = None
    ) -> AuditEvent:
        """The one new record, checked: `action` by `actor` on the target."""
        (row,) = await self.new()
        assert (row.action, row.actor_id, row.target_kind) == (action, actor.user_id, target_kind)
        if target_id is not None:
            assert row.target_id == target_id, row
        return row


@pytest.fixture
def ledger(database: Database) -> Ledger:
    return Ledger(database)


async def _own_token(caller: Caller) -> str:
    """The id of the caller's unscoped token (the one `make_caller` gives them)."""
    tokens = (await caller.gql("{ apiTokens { id name workspaceId } }"))["apiTokens"]
    (found,) = [t["id"] for t in tokens if t["name"] == "test" and t["workspaceId"] is None]
    return str(found)


async def _result(caller: Caller, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = dict(only(await caller.gql(operation, variables)))
    assert answer["__typename"] not in ("ValidationError", "NotFoundError", "ForbiddenError"), (
        answer
    )
    return answer


async def test_each_workflow_change_leaves_one_record(alice: Caller, ledger: Ledger) -> None:
    created = await _result(alice, CREATE, {"input": workflow_input("Audited")})
    workflow_id = created["id"]
    row = await ledger.one("workflow.create", alice, "workflow", workflow_id)
    # The token the call used is recorded, an unscoped one too.
    assert row.details == {"name": "Audited"} and row.token_id == await _own_token(alice)
    assert row.workspace_id is not None
    version = created["version"]

    async def edit(operation: str, **variables: Any) -> None:
        nonlocal version
        answer = await _result(alice, operation, {"wf": workflow_id, "v": version, **variables})
        version = answer["version"]
        row = await ledger.one("workflow.update", alice, "workflow", workflow_id)
        assert row.details["version"] == version

    await edit(ADD_NODE, node=node("n3", "Step 3"))
    await edit(UPDATE_NODE, nodeId="n3", node=node("n3", "Step three"))
    await edit(ADD_EDGE, edge=edge("n2", "n3"))
    await edit(REMOVE_EDGE, edge=edge("n2", "n3"))
    await edit(REMOVE_NODE, nodeId="n3")
    await edit(PIN_NODE_DATA, nodeId="n1", items=[{"a": 1}])
    await edit(UNPIN_NODE_DATA, nodeId="n1")
    updated = await _result(
        alice, UPDATE, {"id": workflow_id, "input": workflow_input("Renamed"), "v": version}
    )
    row = await ledger.one("workflow.update", alice, "workflow", workflow_id)
    assert row.details == {"version": updated["version"], "operation": "updateWorkflow"}
    published = await _result(alice, PUBLISH, {"id": workflow_id, "v": updated["version"]})
    row = await ledger.one("workflow.publish", alice, "workflow", workflow_id)
    assert row.details == {"version": published["publishedVersion"]}
    await _result(alice, SET_ACTIVE, {"id": workflow_id, "active": True})
    await ledger.one("workflow.activate", alice, "workflow", workflow_id)
    await _result(alice, SET_ACTIVE, {"id": workflow_id, "active": False})
    await ledger.one("workflow.deactivate", alice, "workflow", workflow_id)
    copy = await _result(alice, DUPLICATE, {"id": workflow_id})
    row = await ledger.one("workflow.create", alice, "workflow", copy["id"])
    assert row.details["copy_of"] == workflow_id
    document = only(await alice.gql(EXPORT, {"id": workflow_id}))["document"]
    imported = await _result(alice, IMPORT, {"document": document})
    await ledger.one("workflow.create", alice, "workflow", imported["id"])
    await _result(alice, DELETE, {"id": workflow_id})
    await ledger.one("workflow.delete", alice, "workflow", workflow_id)


async def test_credential_changes_are_recorded_without_their_values(
    alice: Caller, ledger: Ledger, database: Database
) -> None:
    input = {"name": "Key", "kind": "bearer_token", "data": {"token": SECRET}}
    created = await _result(alice, CREATE_CREDENTIAL, {"input": input})
    row = await ledger.one("credential.create", alice, "credential", created["id"])
    assert row.details == {"name": "Key", "kind": "bearer_token"}
    changes = {"name": "Key 2", "data": {"token": SECRET + "-2"}}
    await _result(alice, UPDATE_CREDENTIAL, {"id": created["id"], "input": changes})
    row = await ledger.one("credential.update", alice, "credential", created["id"])
    assert row.details == {"name": "Key 2", "fields": ["token"]}
    await _result(alice, DELETE_CREDENTIAL, {"id": created["id"]})
    await ledger.one("credential.delete", alice, "credential", created["id"])
    stored = json.dumps([row.model_dump(mode="json") for row in await _records(database)])
    assert SECRET not in stored
    shown = await alice.gql(AUDIT_LOG, {"ws": row.workspace_id})
    assert SECRET not in json.dumps(shown)


async def test_moves_and_shares_are_recorded_in_each_workspace(
    alice: Caller, ledger: Ledger
) -> None:
    source = (await _result(alice, CREATE_WORKSPACE, {"name": "From"}))["id"]
    target = (await _result(alice, CREATE_WORKSPACE, {"name": "To"}))["id"]
    input = {
        "name": "Key",
        "kind": "bearer_token",
        "data": {"token": SECRET},
        "workspaceId": source,
        "allowedDomains": ["api.example.com"],
    }
    credential = (await _result(alice, CREATE_CREDENTIAL, {"input": input}))["id"]
    flow = await _result(alice, CREATE_IN, {"input": workflow_input(), "ws": source})
    await ledger.new()
    both = [
        (source, {"name": "Key", "shared_with": target}),
        (target, {"name": "Key", "shared_from": source}),
    ]
    await _result(alice, SHARE, {"id": credential, "ws": target})
    rows = await ledger.new()
    assert [(r.action, r.target_id, r.workspace_id, r.details) for r in rows] == [
        ("credential.share", credential, *each) for each in both
    ]
    await _result(alice, SHARE, {"id": credential, "ws": target})  # shared already
    assert await ledger.new() == []
    await _result(alice, UNSHARE, {"id": credential, "ws": target})
    rows = await ledger.new()
    assert [(r.action, r.target_id, r.workspace_id, r.details) for r in rows] == [
        ("credential.unshare", credential, *each) for each in both
    ]
    await _result(alice, MOVE, {"id": flow["id"], "ws": target})
    rows = await ledger.new()
    assert [(r.action, r.workspace_id, r.target_id, r.details) for r in rows] == [
        ("workflow.move", ws, flow["id"], {"name": "My workflow", **details})
        for ws, details in ((source, {"to": target}), (target, {"from": source}))
    ]
    assert SECRET not in json.dumps([row.model_dump(mode="json") for row in rows])


async def test_workspace_member_and_token_changes_are_recorded(
    alice: Caller, bob: Caller, ledger: Ledger
) -> None:
    created = await _result(alice, CREATE_WORKSPACE, {"name": "Team"})
    workspace_id = created["id"]
    row = await ledger.one("workspace.create", alice, "workspace", workspace_id)
    assert (row.workspace_id, row.details) == (workspace_id, {"name": "Team"})
    await _result(alice, RENAME_WORKSPACE, {"id": workspace_id, "name": "Crew"})
    row = await ledger.one("workspace.rename", alice, "workspace", workspace_id)
    assert row.details == {"name": "Crew"}
    member = {"ws": workspace_id, "user": bob.user_id}
    await _result(alice, ADD_MEMBER, {**member, "role": "viewer"})
    row = await ledger.one("member.add", alice, "user", bob.user_id)
    assert row.details == {"role": "viewer"}
    await _result(alice, CHANGE_ROLE, {**member, "role": "editor"})
    row = await ledger.one("member.role_change", alice, "user", bob.user_id)
    assert row.details == {"old_role": "viewer", "role": "editor"}
    await _result(bob, REMOVE_MEMBER, member)  # leaving is recorded too, as bob's
    row = await ledger.one("member.remove", bob, "user", bob.user_id)
    assert row.details == {"role": "editor"}
    token = only(await alice.gql(CREATE_TOKEN, {"name": "ci", "ws": workspace_id}))
    token_id = token["apiToken"]["id"]
    row = await ledger.one("token.create", alice, "token", token_id)
    assert row.workspace_id == workspace_id and token["token"] not in json.dumps(row.details)
    await _result(alice, REVOKE_TOKEN, {"id": token_id})
    await ledger.one("token.revoke", alice, "token", token_id)
    await _result(alice, DELETE_WORKSPACE, {"id": workspace_id})
    await ledger.one("workspace.delete", alice, "workspace", workspace_id)


async def test_executions_types_and_policies_are_recorded(
    app: Any, alice: Caller, ledger: Ledger
) -> None:
    wait = node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"})
    nodes = [node("start", "Start", "manual_trigger"), wait]
    created = await _result(
        alice, CREATE, {"input": {"name": "Slow", "nodes": nodes, "edges": [edge("start", "wait")]}}
    )
    await ledger.new()
    started = await _result(alice, EXECUTE, {"id": created["id"]})
    row = await ledger.one("execution.run", alice, "execution", started["id"])
    assert row.details == {"workflow_id": created["id"], "version": 1}
    # A repeat of an idempotent start changes nothing, and records nothing.
    keyed = await _result(alice, EXECUTE, {"id": created["id"], "key": "once"})
    await ledger.one("execution.run", alice, "execution", keyed["id"])
    again = await _result(alice, EXECUTE, {"id": created["id"], "key": "once"})
    assert again["id"] == keyed["id"] and await ledger.new() == []

    async def waiting() -> bool:
        data = await alice.gql(GET_EXECUTION, {"id": started["id"]})
        return bool(data["execution"]["status"] in ("RUNNING", "WAITING"))

    await until(waiting, what="the execution to wait")
    cancelled = await _result(alice, CANCEL, {"id": started["id"]})
    assert cancelled["status"] == "CANCELLED"
    await ledger.one("execution.cancel", alice, "execution", started["id"])
    await _result(alice, CANCEL, {"id": keyed["id"]})
    await ledger.one("execution.cancel", alice, "execution", keyed["id"])
    await finished(app, alice, started["id"])
    retried = await _result(alice, RETRY, {"id": started["id"]})
    row = await ledger.one("execution.retry", alice, "execution", retried["id"])
    assert row.details["retry_of"] == started["id"]
    await _result(alice, CANCEL, {"id": retried["id"]})
    await ledger.new()

    workspace_id = row.workspace_id
    variables = {"ws": workspace_id, "name": "ws.ping", "input": PING_TYPE}
    await _result(alice, CREATE_TYPE, variables)
    row = await ledger.one("node_type.create", alice, "node_type", "ws.ping")
    assert row.details == {"version": 1}
    await _result(alice, UPDATE_TYPE, variables)
    row = await ledger.one("node_type.update", alice, "node_type", "ws.ping")
    assert row.details == {"version": 2}
    await _result(alice, DELETE_TYPE, {"ws": workspace_id, "name": "ws.ping"})
    await ledger.one("node_type.delete", alice, "node_type", "ws.ping")
    disable = {"name": "noop", "enabled": False, "ws": workspace_id, "reason": "unused"}
    await _result(alice, SET_ENABLED, disable)
    row = await ledger.one("node_type_policy.change", alice, "node_type", "noop")
    assert row.details == {"enabled": False, "reason": "unused"}
    await _result(alice, SET_ENABLED, disable)  # already disabled: no change, no record
    assert await ledger.new() == []


async def test_a_refused_change_leaves_no_record(
    alice: Caller, make_caller: MakeCaller, ledger: Ledger
) -> None:
    viewer = await make_caller("viewer")
    workspace_id = await team(alice, {"viewer": viewer})
    workflow = await _result(alice, CREATE_IN, {"input": workflow_input(), "ws": workspace_id})
    await ledger.new()
    refusals = [
        (CREATE_IN, {"input": workflow_input(), "ws": workspace_id}),
        (DELETE, {"id": workflow["id"]}),
        (RENAME_WORKSPACE, {"id": workspace_id, "name": "Mine"}),
        (ADD_MEMBER, {"ws": workspace_id, "user": viewer.user_id, "role": "owner"}),
        (EXECUTE, {"id": workflow["id"]}),
    ]
    for operation, variables in refusals:
        answer = only(await viewer.gql(operation, variables))
        assert answer["__typename"] == "ForbiddenError", answer
    # Refused by the owner's own change too: a bad role, a stale version, the last owner.
    bad_role = only(
        await alice.gql(ADD_MEMBER, {"ws": workspace_id, "user": viewer.user_id, "role": "boss"})
    )
    assert bad_role["__typename"] == "ValidationError"
    stale = only(
        await alice.gql(UPDATE, {"id": workflow["id"], "input": workflow_input(), "v": 99})
    )
    assert stale["__typename"] == "VersionConflictError"
    last_owner = only(
        await alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "viewer"})
    )
    assert last_owner["__typename"] == "ValidationError"
    assert await ledger.new() == []


async def test_a_scoped_tokens_changes_carry_its_id(alice: Caller, ledger: Ledger) -> None:
    workspace_id = await team(alice, {})
    ci = await scoped(alice, ws=workspace_id, role="editor")
    token_id = (await ledger.new())[-1].target_id
    created = await _result(ci, CREATE_IN, {"input": workflow_input(), "ws": workspace_id})
    row = await ledger.one("workflow.create", alice, "workflow", created["id"])
    assert row.token_id == token_id
    started = await _result(ci, EXECUTE, {"id": created["id"]})
    row = await ledger.one("execution.run", alice, "execution", started["id"])
    assert row.token_id == token_id
    page = await alice.gql(AUDIT_LOG, {"ws": workspace_id, "first": 1})
    (shown,) = page["auditLog"]["edges"]
    assert shown["node"]["actor"] == {
        "userId": alice.user_id,
        "tokenId": token_id,
        "user": {"name": "alice"},
    }
    assert shown["node"]["action"] == "execution.run"


async def test_pages_newest_first_and_filters(
    alice: Caller, bob: Caller, database: Database
) -> None:
    workspace_id = await team(alice, {"admin": bob})
    for number in range(3):
        await _result(alice, CREATE_IN, {"input": workflow_input(f"A{number}"), "ws": workspace_id})
    await _result(bob, CREATE_IN, {"input": workflow_input("B"), "ws": workspace_id})
    everything = [row for row in await _records(database) if row.workspace_id == workspace_id]
    newest_first = [row.id for row in reversed(everything)]
    seen: list[str] = []
    after = None
    while True:
        page = (await bob.gql(AUDIT_LOG, {"ws": workspace_id, "first": 2, "after": after}))[
            "auditLog"
        ]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == newest_first and len(seen) == 6  # create, add bob, four workflows
    bobs = (await alice.gql(AUDIT_LOG, {"ws": workspace_id, "actor": bob.user_id}))["auditLog"]
    assert [edge["node"]["details"]["name"] for edge in bobs["edges"]] == ["B"]
    creations = (await alice.gql(AUDIT_LOG, {"ws": workspace_id, "action": "workflow.create"}))[
        "auditLog"
    ]
    assert [edge["node"]["details"]["name"] for edge in creations["edges"]] == [
        "B",
        "A2",
        "A1",
        "A0",
    ]
    # Another workspace's records are not in this one's log.
    assert all(edge["node"]["workspaceId"] == workspace_id for edge in creations["edges"])


async def test_bad_arguments_are_request_errors_naming_them(alice: Caller) -> None:
    workspace_id = await team(alice, {})
    for variables, field in (
        ({"ws": workspace_id, "action": "workflow.explode"}, "action"),
        ({"ws": workspace_id, "first": -1}, "first"),
    ):
        body = (await alice.post(AUDIT_LOG, variables)).json()
        assert body["data"] is None, body
        (error,) = body["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error
    body = (await alice.post(AUDIT_LOG, {"ws": workspace_id, "after": "garbage"})).json()
    assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_outsiders_get_not_found_and_members_forbidden(
    alice: Caller, make_caller: MakeCaller, db_state: Callable[[], Awaitable[Any]]
) -> None:
    members = {role: await make_caller(role) for role in ROLES if role != "owner"}
    workspace_id = await team(alice, members)
    outsider = await make_caller("outsider")
    dashboard = await scoped(alice, ws=workspace_id)
    before = await db_state()
    for role, caller in members.items():
        answer = (await caller.gql(AUDIT_LOG, {"ws": workspace_id}))["auditLog"]
        expected = "AuditEventConnection" if role == "admin" else "ForbiddenError"
        assert answer["__typename"] == expected, (role, answer)
    answer = (await outsider.gql(AUDIT_LOG, {"ws": workspace_id}))["auditLog"]
    assert answer["__typename"] == "NotFoundError"
    # The whole log: server admins only, never a scoped token.
    for caller in (alice, members["admin"], dashboard):
        answer = (await caller.gql(AUDIT_LOG, {}))["auditLog"]
        assert answer["__typename"] == "ForbiddenError", answer
    assert await db_state() == before


async def test_a_server_admin_reads_every_record(
    alice: Caller, make_caller: MakeCaller, ledger: Ledger
) -> None:
    admin = await make_caller("root", admin=True)
    await _result(alice, CREATE, {"input": workflow_input()})
    token = only(await alice.gql(CREATE_TOKEN, {"name": "mine"}))  # a server-wide record
    page = (await admin.gql(AUDIT_LOG, {}))["auditLog"]
    shown = [(edge["node"]["action"], edge["node"]["workspaceId"]) for edge in page["edges"]]
    assert shown[0] == ("token.create", None)
    assert shown[1][0] == "workflow.create"
    assert token["apiToken"]["id"] == page["edges"][0]["node"]["targetId"]


async def test_records_older_than_the_retention_bound_are_pruned(
    alice: Caller, database: Database
) -> None:
    for number in range(3):
        await _result(alice, CREATE, {"input": workflow_input(f"W{number}")})
    assert len(await _records(database)) == 3
    now = utcnow()

    async def pruned(hours: float | None, at: datetime, dry_run: bool = False) -> PruneRecord:
        # Another process (a test elsewhere on the shared server) may be pruning: try again.
        policy = RetentionPolicy(audit_max_age_hours=hours)
        return await until(
            lambda: prune(database, policy, now=at, dry_run=dry_run), what="a prune of its own"
        )

    await pruned(None, now + timedelta(days=400))  # `none`: kept
    await pruned(24, now)
    assert len(await _records(database)) == 3
    # A dry run says what a prune would delete, and deletes nothing.
    dry = await pruned(24, now + timedelta(hours=25), dry_run=True)
    assert dry.rows_deleted["audit_events"] == 3
    assert len(await _records(database)) == 3
    record = await pruned(24, now + timedelta(hours=25))
    assert record.rows_deleted["audit_events"] == 3
    assert await _records(database) == []


async def test_runs_of_one_node_and_to_a_node_are_runs(
    app: Any, alice: Caller, ledger: Ledger
) -> None:
    created = await _result(alice, CREATE, {"input": workflow_input()})
    await ledger.new()
    single = await _result(alice, EXECUTE_NODE, {"wf": created["id"], "node": "n1", "items": []})
    row = await ledger.one("execution.run", alice, "execution", single["id"])
    assert (row.details["node_id"], row.details["node_only"]) == ("n1", True)
    await finished(app, alice, single["id"])
    partial = await _result(alice, RUN_TO, {"id": created["id"], "to": "n1"})
    row = await ledger.one("execution.run", alice, "execution", partial["id"])
    assert (row.details["node_id"], row.details["node_only"]) == ("n1", False)
    await finished(app, alice, partial["id"])
    # Cancelling an execution that has ended changes nothing, and records nothing.
    ended = await _result(alice, CANCEL, {"id": partial["id"]})
    assert ended["status"] == "SUCCEEDED" and await ledger.new() == []


def test_docs_list_every_action() -> None:
    page = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    part = page[page.index("### Audit log") : page.index("## Live execution events")]
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", part))
    assert documented == {action.value for action in AuditAction}


async def test_changes_that_change_nothing_record_nothing(
    alice: Caller, bob: Caller, ledger: Ledger
) -> None:
    created = await _result(alice, CREATE, {"input": workflow_input("Same")})
    workflow_id, version = created["id"], created["version"]
    await _result(alice, PUBLISH, {"id": workflow_id, "v": version})
    await _result(alice, SET_ACTIVE, {"id": workflow_id, "active": True})
    workspace_id = await team(alice, {"viewer": bob})
    input = {"name": "Key", "kind": "bearer_token", "data": {"token": SECRET}}
    credential = (await _result(alice, CREATE_CREDENTIAL, {"input": input}))["id"]
    token = only(await alice.gql(CREATE_TOKEN, {"name": "ci"}))["apiToken"]["id"]
    await _result(alice, REVOKE_TOKEN, {"id": token})
    await ledger.new()
    # Each answers as before, and leaves no record.
    again = await _result(alice, PUBLISH, {"id": workflow_id, "v": version})
    assert (again["__typename"], again["publishedVersion"]) == ("Workflow", version)
    for active in (True, False):
        await _result(alice, SET_ACTIVE, {"id": workflow_id, "active": active})
        await _result(alice, SET_ACTIVE, {"id": workflow_id, "active": active})
    switched = await ledger.new()
    assert [row.action for row in switched] == ["workflow.deactivate"]
    revoked = await _result(alice, REVOKE_TOKEN, {"id": token})
    assert revoked == {"__typename": "ApiToken", "id": token}
    member = {"ws": workspace_id, "user": bob.user_id, "role": "viewer"}
    same_role = await _result(alice, CHANGE_ROLE, member)
    assert same_role["__typename"] == "WorkspaceMember", same_role
    renamed = await _result(alice, RENAME_WORKSPACE, {"id": workspace_id, "name": " Team "})
    assert renamed["__typename"] == "Workspace"
    for changes in ({}, {"name": "Key"}, {"data": {"token": SECRET}}):
        kept = await _result(alice, UPDATE_CREDENTIAL, {"id": credential, "input": changes})
        assert (kept["__typename"], kept["name"]) == ("Credential", "Key")
    assert await ledger.new() == []
    # A rename that sends a field unchanged names no field.
    changes = {"name": "Key 2", "data": {"token": SECRET}}
    await _result(alice, UPDATE_CREDENTIAL, {"id": credential, "input": changes})
    row = await ledger.one("credential.update", alice, "credential", credential)
    assert row.details == {"name": "Key 2", "fields": []}


async def test_a_cancel_is_recorded_by_the_transaction_that_takes_it(
    app: Any, alice: Caller, ledger: Ledger
) -> None:
    wait = node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"})
    input = {
        "name": "One at a time",
        "nodes": [node("start", "Start", "manual_trigger"), wait],
        "edges": [edge("start", "wait")],
        "settings": {"maxConcurrentExecutions": 1},
    }
    created = await _result(alice, CREATE, {"input": input})
    running = (await _result(alice, EXECUTE, {"id": created["id"]}))["id"]
    held = (await _result(alice, EXECUTE, {"id": created["id"]}))["id"]
    await ledger.new()

    async def status(execution_id: str) -> str:
        data = await alice.gql(GET_EXECUTION, {"id": execution_id})
        return str(data["execution"]["status"])

    async def holding() -> bool:
        return await status(running) in ("RUNNING", "WAITING")

    await until(holding, what="the first execution to hold the slot")
    assert await status(held) == "QUEUED"  # held back by the limit
    await _result(alice, CANCEL, {"id": held})
    row = await ledger.one("execution.cancel", alice, "execution", held)
    assert row.details == {"workflow_id": created["id"], "status": "QUEUED"}
    assert row.token_id == await _own_token(alice)
    await _result(alice, CANCEL, {"id": running})
    row = await ledger.one("execution.cancel", alice, "execution", running)
    # A 30 s wait runs in the process (durable waits park past 30 s): RUNNING.
    assert row.details == {"workflow_id": created["id"], "status": "RUNNING"}
    await finished(app, alice, running)
    # Ended: cancelling either again changes nothing and records nothing.
    for execution_id in (held, running):
        ended = await _result(alice, CANCEL, {"id": execution_id})
        assert ended["status"] == "CANCELLED"
    assert await ledger.new() == []


async def test_two_concurrent_cancels_leave_one_record(
    app: Any, alice: Caller, ledger: Ledger
) -> None:
    # Parked (WAITING, a durable wait): the request to stop and the cancel of an unheld
    # execution both run, and between them record one cancel.
    wait = node("wait", "Wait", "wait", parameters={"amount": 10, "unit": "minutes"})
    nodes = [node("start", "Start", "manual_trigger"), wait]
    input = {"name": "Slow", "nodes": nodes, "edges": [edge("start", "wait")]}
    created = await _result(alice, CREATE, {"input": input})
    started = (await _result(alice, EXECUTE, {"id": created["id"]}))["id"]

    async def parked() -> bool:
        data = await alice.gql(GET_EXECUTION, {"id": started})
        return bool(data["execution"]["status"] == "WAITING")

    await until(parked, what="the execution to park")
    await ledger.new()
    answers = await asyncio.gather(*(alice.gql(CANCEL, {"id": started}) for _ in range(2)))
    assert all(only(answer)["__typename"] == "Execution" for answer in answers)
    row = await ledger.one("execution.cancel", alice, "execution", started)
    assert row.details["status"] == "WAITING"
    await finished(app, alice, started)


async def test_a_server_admin_reads_any_workspaces_records(
    alice: Caller, make_caller: MakeCaller
) -> None:
    admin = await make_caller("root", admin=True)
    workspace_id = await team(alice, {})
    await _result(alice, RENAME_WORKSPACE, {"id": workspace_id, "name": "Crew"})
    page = (await admin.gql(AUDIT_LOG, {"ws": workspace_id}))["auditLog"]  # not a member
    assert [edge["node"]["action"] for edge in page["edges"]] == [
        "workspace.rename",
        "workspace.create",
    ]
    await _result(alice, DELETE_WORKSPACE, {"id": workspace_id})
    # A deleted workspace's records outlive it: a server admin still reads them, its former
    # owner (no longer a member) does not.
    page = (await admin.gql(AUDIT_LOG, {"ws": workspace_id}))["auditLog"]
    assert [edge["node"]["action"] for edge in page["edges"]] == [
        "workspace.delete",
        "workspace.rename",
        "workspace.create",
    ]
    gone = (await alice.gql(AUDIT_LOG, {"ws": workspace_id}))["auditLog"]
    assert gone["__typename"] == "NotFoundError"
    # A scoped token of a server admin is no server admin.
    dashboard = await scoped(admin, role="viewer")
    refused = (await dashboard.gql(AUDIT_LOG, {"ws": workspace_id}))["auditLog"]
    assert refused["__typename"] == "NotFoundError"


async def test_upgrade_node_is_a_workflow_update(alice: Caller, ledger: Ledger) -> None:
    workspace_id = await team(alice, {})
    variables = {"ws": workspace_id, "name": "ws.ping", "input": PING_TYPE}
    await _result(alice, CREATE_TYPE, variables)
    nodes = [node("start", "Start", "manual_trigger"), node("ping", "Ping", "ws.ping")]
    input = {"name": "Pings", "nodes": nodes, "edges": [edge("start", "ping")]}
    created = await _result(alice, CREATE_IN, {"input": input, "ws": workspace_id})
    await _result(alice, UPDATE_TYPE, variables)  # version 2
    await ledger.new()
    upgrade = {"wf": created["id"], "nodeId": "ping", "to": 2, "v": 1}
    upgraded = await _result(alice, UPGRADE_NODE, upgrade)
    row = await ledger.one("workflow.update", alice, "workflow", created["id"])
    assert row.details == {"version": upgraded["version"], "operation": "upgradeNode"}


async def test_an_admin_revoking_anothers_token_is_the_actor(
    alice: Caller, make_caller: MakeCaller, ledger: Ledger
) -> None:
    admin = await make_caller("root", admin=True)
    token = only(await alice.gql(CREATE_TOKEN, {"name": "ci"}))["apiToken"]["id"]
    await ledger.new()
    await _result(admin, REVOKE_TOKEN, {"id": token})
    row = await ledger.one("token.revoke", admin, "token", token)
    assert row.details["user_id"] == alice.user_id
    assert row.token_id == await _own_token(admin)


async def test_execute_over_websocket_is_recorded(app: Any, alice: Caller, ledger: Ledger) -> None:
    workspace_id = await team(alice, {})
    ci = await scoped(alice, ws=workspace_id, role="editor")
    created = await _result(ci, CREATE_IN, {"input": workflow_input(), "ws": workspace_id})
    (token_id,) = [r.target_id for r in await ledger.new() if r.action == "token.create"]
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {ci.token}"}}
    subscribe = {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": EXECUTE, "variables": {"id": created["id"]}},
    }
    async with (
        serve(app) as url,
        connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10) as sock,
    ):
        await sock.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(sock.recv(), 10))["type"] == "connection_ack"
        await sock.send(json.dumps(subscribe))
        answer = json.loads(await asyncio.wait_for(sock.recv(), 10))
    started = answer["payload"]["data"]["executeWorkflow"]
    rows = await ledger.new()
    assert [(r.action, r.target_id, r.token_id) for r in rows] == [
        ("execution.run", started["id"], token_id)
    ]
    await finished(app, alice, started["id"])


async def test_ties_paginate(alice: Caller, database: Database) -> None:
    """Records of one instant, in two workspaces: a workspace's pages hold each of its own
    once, and none of the other's."""
    workspace_id = await team(alice, {})
    other = await team(alice, {}, name="Other")
    at = utcnow()
    async with database.transaction() as session:
        for number in range(7):
            for workspace, prefix in ((workspace_id, "t"), (other, "o")):
                session.add(
                    AuditEvent(
                        occurred_at=at,
                        workspace_id=workspace,
                        actor_id=alice.user_id,
                        action="workflow.update",
                        target_kind="workflow",
                        target_id=f"{prefix}{number}",
                        details={},
                    )
                )
    for first in (1, 2, 3):
        seen: list[str] = []
        after = None
        while True:
            variables = {"ws": workspace_id, "first": first, "after": after}
            page = only(await alice.gql(AUDIT_LOG, {**variables, "action": "workflow.update"}))
            seen += [edge["node"]["targetId"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert sorted(seen) == [f"t{number}" for number in range(7)], (first, seen)
