"""Shared workspaces and their members (issue 18, points 1 and 2); personal ones stay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select, update

from storage import executions, workflows, workspaces
from storage.db import Database
from storage.models import (
    Execution,
    Membership,
    NodeTypePolicy,
    NodeTypePolicyChange,
    WebhookIdempotencyKey,
    Workflow,
)
from tests.api.test_node_type_policies import SET_ENABLED
from tests.api.test_scoped_tokens import scoped
from tests.conftest import Caller, MakeCaller
from tests.factories import CREATE, LIST, SET_ACTIVE, only, publish_workflow, workflow_input
from tests.polling import until
from tests.teams import (
    ADD_MEMBER,
    CHANGE_ROLE,
    CREATE_IN,
    DELETE_WORKSPACE,
    REMOVE_MEMBER,
    RENAME_WORKSPACE,
    WORKSPACE,
    WORKSPACES,
    add_member,
    create_workspace,
    team,
)


def codes(result: dict[str, Any]) -> list[tuple[str, str]]:
    assert result["__typename"] == "ValidationError", result
    return [(problem["code"], problem["field"]) for problem in result["problems"]]


async def _create_in(caller: Caller, workspace_id: str, name: str = "Shared") -> dict[str, Any]:
    variables = {"input": workflow_input(name), "ws": workspace_id}
    return dict(only(await caller.gql(CREATE_IN, variables)))


async def test_members_share_a_workspace_and_others_see_nothing_of_it(
    alice: Caller, bob: Caller, make_caller: MakeCaller
) -> None:
    carol = await make_caller("carol")
    workspace_id = await team(alice, {"editor": bob}, name="Ops")
    listed = (await alice.gql(WORKSPACES))["workspaces"]
    assert [(w["name"], w["role"]) for w in listed] == [
        ("Ops", "owner"),
        ("alice's workspace", "owner"),
    ]
    bobs = (await bob.gql(WORKSPACES))["workspaces"]
    assert [(w["name"], w["role"]) for w in bobs] == [
        ("Ops", "editor"),
        ("bob's workspace", "owner"),
    ]
    shown = (await bob.gql(WORKSPACE, {"id": workspace_id}))["workspace"]
    assert shown["role"] == "editor"
    assert [(m["user"]["name"], m["role"]) for m in shown["members"]] == [
        ("alice", "owner"),
        ("bob", "editor"),
    ]
    created = await _create_in(bob, workspace_id)
    assert created["__typename"] == "Workflow" and created["workspace"]["id"] == workspace_id
    for member in (alice, bob):
        names = [e["node"]["name"] for e in (await member.gql(LIST, {}))["workflows"]["edges"]]
        assert names == ["Shared"]
    # Carol is in none of it: the workspace, its workflows and its members are not found.
    assert (await carol.gql(WORKSPACE, {"id": workspace_id}))["workspace"] is None
    assert (await carol.gql(LIST, {}))["workflows"]["edges"] == []
    assert (await _create_in(carol, workspace_id))["__typename"] == "NotFoundError"
    for operation, variables in (
        (RENAME_WORKSPACE, {"id": workspace_id, "name": "mine"}),
        (DELETE_WORKSPACE, {"id": workspace_id}),
        (ADD_MEMBER, {"ws": workspace_id, "user": carol.user_id, "role": "owner"}),
        (CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "viewer"}),
        (REMOVE_MEMBER, {"ws": workspace_id, "user": bob.user_id}),
    ):
        refused = only(await carol.gql(operation, variables))
        assert refused["__typename"] == "NotFoundError", (operation, refused)


async def test_a_change_of_role_applies_to_the_next_request(alice: Caller, bob: Caller) -> None:
    workspace_id = await team(alice, {"viewer": bob})
    assert (await _create_in(bob, workspace_id))["__typename"] == "ForbiddenError"
    promoted = only(
        await alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "editor"})
    )
    assert promoted == {"__typename": "WorkspaceMember", "role": "editor", "user": promoted["user"]}
    assert (await _create_in(bob, workspace_id))["__typename"] == "Workflow"
    removed = only(await alice.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": bob.user_id}))
    assert removed["__typename"] == "WorkspaceMember"
    assert (await _create_in(bob, workspace_id))["__typename"] == "NotFoundError"
    assert (await bob.gql(LIST, {}))["workflows"]["edges"] == []


async def test_admins_manage_members_but_only_owners_manage_owners(
    alice: Caller, bob: Caller, make_caller: MakeCaller, db_state: Any
) -> None:
    carol = await make_caller("carol")
    dave = await make_caller("dave")
    workspace_id = await team(alice, {"admin": bob})
    assert (await add_member(bob, workspace_id, carol, "editor"))["role"] == "editor"
    before = await db_state()
    refused = [
        await add_member(bob, workspace_id, dave, "owner"),
        only(
            await bob.gql(CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "admin"})
        ),
        only(
            await bob.gql(CHANGE_ROLE, {"ws": workspace_id, "user": carol.user_id, "role": "owner"})
        ),
        only(await bob.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": alice.user_id})),
        only(await bob.gql(DELETE_WORKSPACE, {"id": workspace_id})),
        only(await carol.gql(RENAME_WORKSPACE, {"id": workspace_id, "name": "x"})),
        await add_member(carol, workspace_id, dave, "viewer"),
    ]
    assert [r["__typename"] for r in refused] == ["ForbiddenError"] * len(refused), refused
    assert "owner" in refused[0]["message"]
    assert await db_state() == before
    renamed = only(await bob.gql(RENAME_WORKSPACE, {"id": workspace_id, "name": " Platform "}))
    assert renamed["name"] == "Platform"
    # Anyone may leave; an owner makes another owner, who may then demote the first.
    left = only(await carol.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": carol.user_id}))
    assert left["__typename"] == "WorkspaceMember"
    made = only(
        await alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "owner"})
    )
    assert made["role"] == "owner"
    demoted = only(
        await bob.gql(CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "viewer"})
    )
    assert demoted["role"] == "viewer"
    deleted = only(await bob.gql(DELETE_WORKSPACE, {"id": workspace_id}))
    assert deleted == {"__typename": "Deleted", "id": workspace_id}
    assert (await alice.gql(WORKSPACE, {"id": workspace_id}))["workspace"] is None


async def test_bad_changes_are_refused_and_change_nothing(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    workspace_id = await team(alice, {"editor": bob})
    before = await db_state()
    twice = await add_member(alice, workspace_id, bob, "viewer")
    assert codes(twice) == [("ALREADY_MEMBER", "userId")]
    unknown = only(
        await alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "god"})
    )
    assert codes(unknown) == [("UNKNOWN_ROLE", "role")]
    assert codes(await add_member(alice, workspace_id, bob, "")) == [("UNKNOWN_ROLE", "role")]
    last_leaves = only(await alice.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": alice.user_id}))
    assert codes(last_leaves) == [("LAST_OWNER", "userId")]
    last_demoted = only(
        await alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "admin"})
    )
    assert codes(last_demoted) == [("LAST_OWNER", "role")]
    for name in ("", "   ", "x" * 256):
        bad_name = only(await alice.gql(RENAME_WORKSPACE, {"id": workspace_id, "name": name}))
        assert codes(bad_name) == [("INVALID_NAME", "name")] or codes(bad_name)[0][1] == "name"
    for user_id in ("no-such-user", "a\x00b", "x" * 300):
        missing = await alice.gql(
            ADD_MEMBER, {"ws": workspace_id, "user": user_id, "role": "viewer"}
        )
        assert only(missing)["__typename"] == "NotFoundError", user_id
    for workspace in ("no-such-workspace", "a\x00b", "x" * 300):
        missing = only(await alice.gql(DELETE_WORKSPACE, {"id": workspace}))
        assert missing["__typename"] == "NotFoundError", workspace
    personal = (await alice.gql("{ viewer { personalWorkspace { id } } }"))["viewer"]
    personal_id = personal["personalWorkspace"]["id"]
    kept = only(await alice.gql(DELETE_WORKSPACE, {"id": personal_id}))
    assert codes(kept) == [("PERSONAL_WORKSPACE", "id")]
    assert await db_state() == before


async def test_a_workspace_with_active_workflows_is_not_deleted(
    alice: Caller, db_state: Any
) -> None:
    workspace_id = await create_workspace(alice)
    created = await _create_in(alice, workspace_id, "Live")
    read = "query($id: ID!) { workflow(id: $id) { id version } }"
    workflow = only(await alice.gql(read, {"id": created["id"]}))
    await publish_workflow(alice, workflow)
    only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": True}))
    before = await db_state()
    refused = only(await alice.gql(DELETE_WORKSPACE, {"id": workspace_id}))
    assert codes(refused) == [("HAS_ACTIVE_WORKFLOWS", "id")]
    assert "Live" in refused["problems"][0]["message"]
    assert await db_state() == before
    only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": False}))
    deleted = only(await alice.gql(DELETE_WORKSPACE, {"id": workspace_id}))
    assert deleted["__typename"] == "Deleted"
    assert (await alice.gql(LIST, {}))["workflows"]["edges"] == []


async def test_a_single_user_keeps_their_personal_workspace(alice: Caller) -> None:
    listed = (await alice.gql(WORKSPACES))["workspaces"]
    assert [(w["name"], w["role"]) for w in listed] == [("alice's workspace", "owner")]
    created = only(await alice.gql(CREATE, {"input": workflow_input("Mine")}))
    assert created["__typename"] == "Workflow"
    shown = (await alice.gql(WORKSPACE, {"id": listed[0]["id"]}))["workspace"]
    assert [(m["user"]["name"], m["role"]) for m in shown["members"]] == [("alice", "owner")]
    leave = only(await alice.gql(REMOVE_MEMBER, {"ws": listed[0]["id"], "user": alice.user_id}))
    assert codes(leave) in ([("PERSONAL_WORKSPACE", "userId")], [("LAST_OWNER", "userId")])


async def test_nobody_demotes_a_user_in_their_personal_workspace(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    personal = (await alice.gql("{ viewer { personalWorkspace { id } } }"))["viewer"]
    personal_id = personal["personalWorkspace"]["id"]
    assert (await add_member(alice, personal_id, bob, "owner"))["role"] == "owner"
    before = await db_state()
    for role in ("admin", "viewer"):
        demoted = only(
            await bob.gql(CHANGE_ROLE, {"ws": personal_id, "user": alice.user_id, "role": role})
        )
        assert codes(demoted) == [("PERSONAL_WORKSPACE", "role")]
    assert await db_state() == before
    # Alice keeps her workspace: she may still remove the other owner.
    removed = only(await alice.gql(REMOVE_MEMBER, {"ws": personal_id, "user": bob.user_id}))
    assert removed["__typename"] == "WorkspaceMember"


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING", "WAITING"])
async def test_a_workspace_with_unfinished_executions_is_not_deleted(
    alice: Caller, database: Database, db_state: Any, status: str
) -> None:
    # Deleting would cascade the execution away under the engine that runs it.
    workspace_id = await create_workspace(alice)
    created = await _create_in(alice, workspace_id, "Busy")
    async with database.transaction() as session:
        workflow = await session.get(Workflow, created["id"])
        assert workflow is not None
        snapshot = await workflows.ensure_snapshot(session, workflow, alice.user_id)
        execution = await executions.create_execution(
            session,
            workflow=workflow,
            snapshot=snapshot,
            mode="manual",
            input={},
            created_by=alice.user_id,
        )
        await session.exec(
            update(Execution).where(col(Execution.id) == execution.id).values(status=status)
        )
    before = await db_state()
    refused = only(await alice.gql(DELETE_WORKSPACE, {"id": workspace_id}))
    assert codes(refused) == [("HAS_RUNNING_EXECUTIONS", "id")]
    assert await db_state() == before
    async with database.transaction() as session:
        await session.exec(
            update(Execution).where(col(Execution.id) == execution.id).values(status="SUCCEEDED")
        )
    assert only(await alice.gql(DELETE_WORKSPACE, {"id": workspace_id}))["__typename"] == "Deleted"


async def test_an_unknown_role_is_named_short(alice: Caller, bob: Caller, db_state: Any) -> None:
    workspace_id = await create_workspace(alice)
    before = await db_state()
    long_role = "r" * 5000
    for refused in (
        await add_member(alice, workspace_id, bob, long_role),
        only(
            await alice.gql(
                CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": long_role}
            )
        ),
    ):
        assert codes(refused) == [("UNKNOWN_ROLE", "role")]
        assert len(refused["problems"][0]["message"]) < 200, refused
    assert await db_state() == before


async def test_an_activation_waits_for_a_deletion_of_its_workspace(
    alice: Caller, database: Database
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: the deletion and the activation cannot interleave")
    workspace_id = await create_workspace(alice)
    created = await _create_in(alice, workspace_id, "Soon active")
    read = "query($id: ID!) { workflow(id: $id) { id version } }"
    await publish_workflow(alice, only(await alice.gql(read, {"id": created["id"]})))
    waiting = text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    # A deletion holds the workspace's lock and has found no active workflow...
    async with database.transaction() as session:
        await database.lock(session, workspaces.lock_name(workspace_id))
        activation = asyncio.create_task(
            alice.gql(SET_ACTIVE, {"id": created["id"], "active": True})
        )

        async def blocked() -> bool:
            async with database.session() as other:
                return activation.done() or (await other.exec(waiting)).one()[0] > 0  # type: ignore[call-overload]

        await until(blocked, what="the activation waiting or done")
        # ...so the activation must not have been committed in between.
        assert not activation.done(), activation.result()
        await workspaces.delete_workspace(session, workspace_id)
    answer = only(await activation)
    assert answer["__typename"] == "NotFoundError", answer


async def test_deleting_a_workspace_deletes_its_node_type_policies(
    alice: Caller, database: Database
) -> None:
    workspace_id = await create_workspace(alice)
    disabled = only(
        await alice.gql(SET_ENABLED, {"name": "noop", "enabled": False, "ws": workspace_id})
    )
    assert disabled["__typename"] == "NodeType", disabled
    assert only(await alice.gql(DELETE_WORKSPACE, {"id": workspace_id}))["__typename"] == "Deleted"
    async with database.session() as session:
        for table in (NodeTypePolicy, NodeTypePolicyChange):
            left = await session.exec(select(table).where(col(table.scope) == workspace_id))
            assert left.all() == [], table


async def test_deleting_a_workspace_deletes_its_webhook_idempotency_keys(
    alice: Caller, database: Database
) -> None:
    workspace_id = await create_workspace(alice)
    inside = (await _create_in(alice, workspace_id))["id"]
    outside = only(await alice.gql(CREATE, {"input": workflow_input("Mine")}))["id"]
    async with database.transaction() as session:
        for workflow_id in (inside, outside):
            session.add(WebhookIdempotencyKey(workflow_id=workflow_id, key="k", execution_id="e"))
    assert only(await alice.gql(DELETE_WORKSPACE, {"id": workspace_id}))["__typename"] == "Deleted"
    async with database.session() as session:
        left = await session.exec(select(WebhookIdempotencyKey.workflow_id))
        assert left.all() == [outside]


async def test_personal_workspaces_show_only_to_their_user(alice: Caller, bob: Caller) -> None:
    workspace_id = await team(alice, {"viewer": bob})
    read = """query($id: ID!) {
      viewer { personalWorkspace { id } }
      workspace(id: $id) { members { user { name personalWorkspace { id } } } }
    }"""
    seen = await bob.gql(read, {"id": workspace_id})
    own = seen["viewer"]["personalWorkspace"]["id"]
    shown = {
        m["user"]["name"]: m["user"]["personalWorkspace"] for m in seen["workspace"]["members"]
    }
    assert shown == {"alice": None, "bob": {"id": own}}
    limited = await scoped(bob, ws=workspace_id)
    assert (await limited.gql(read, {"id": workspace_id}))["viewer"]["personalWorkspace"] is None


async def test_a_rename_asks_the_stored_role_before_the_name(
    alice: Caller, make_caller: MakeCaller, database: Database
) -> None:
    """renameWorkspace decides on the caller's role as stored under the workspace's lock
    first, the name then: a member demoted meanwhile (by another process, their cached
    principal still an admin's) hears ForbiddenError, whatever name they send."""
    bob = await make_caller("bobby")
    workspace_id = await team(alice, {"admin": bob})
    renamed = only(await bob.gql(RENAME_WORKSPACE, {"id": workspace_id, "name": "Ours"}))
    assert renamed["__typename"] == "Workspace"
    async with database.transaction() as session:
        await session.exec(
            update(Membership)
            .where(
                col(Membership.workspace_id) == workspace_id,
                col(Membership.user_id) == bob.user_id,
            )
            .values(role="viewer")
        )
    answer = only(await bob.gql(RENAME_WORKSPACE, {"id": workspace_id, "name": "   "}))
    assert answer["__typename"] == "ForbiddenError", answer
