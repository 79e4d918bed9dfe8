"""API tokens limited to one workspace and to a role at most (issue 18, point 4)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlmodel import col, update

from storage.accounts import hash_token
from storage.db import Database
from storage.models import ApiToken
from tests.api.test_executions import EXECUTE
from tests.conftest import Caller, MakeCaller
from tests.factories import CREATE, GET, LIST, UPDATE, create_workflow, only, workflow_input
from tests.teams import CREATE_IN, CREATE_WORKSPACE, REMOVE_MEMBER, team

CREATE_TOKEN = """
mutation($name: String!, $u: ID, $ws: ID, $role: String) {
  createApiToken(name: $name, userId: $u, workspaceId: $ws, role: $role) {
    __typename
    ... on CreatedApiToken { token apiToken { id name workspaceId role } }
    ... on ValidationError { problems { code field } }
    ... on NotFoundError { id }
    ... on ForbiddenError { message }
  }
}
"""


async def scoped(caller: Caller, **scope: Any) -> Caller:
    """A token of `caller` limited as `scope` says (ws, role), as a caller of its own."""
    created = only(await caller.gql(CREATE_TOKEN, {"name": "scoped", **scope}))
    assert created["__typename"] == "CreatedApiToken", created
    return replace(caller, token=created["token"])


async def test_a_read_only_token_for_one_workspace(alice: Caller, bob: Caller) -> None:
    workspace_id = await team(alice, {"editor": bob})
    shared = only(
        await alice.gql(CREATE_IN, {"input": workflow_input("Shared"), "ws": workspace_id})
    )
    personal = await create_workflow(alice, "Personal")
    dashboard = await scoped(alice, ws=workspace_id, role="viewer")
    tokens = (await alice.gql("{ apiTokens { name workspaceId role } }"))["apiTokens"]
    assert {"name": "scoped", "workspaceId": workspace_id, "role": "viewer"} in tokens
    assert {"name": "test", "workspaceId": None, "role": None} in tokens
    listed = (await dashboard.gql(LIST, {}))["workflows"]["edges"]
    assert [e["node"]["id"] for e in listed] == [shared["id"]]
    workspaces = (await dashboard.gql("{ workspaces { id role } }"))["workspaces"]
    assert workspaces == [{"id": workspace_id, "role": "viewer"}]
    # What the role may not do is forbidden; the other workspace is not found.
    refused = only(await dashboard.gql(CREATE_IN, {"input": workflow_input(), "ws": workspace_id}))
    assert refused["__typename"] == "ForbiddenError"
    run = only(await dashboard.gql(EXECUTE, {"id": shared["id"]}))
    assert run["__typename"] == "ForbiddenError"
    assert (await dashboard.gql(GET, {"id": personal["id"]}))["workflow"] is None
    elsewhere = only(await dashboard.gql(EXECUTE, {"id": personal["id"]}))
    assert elsewhere["__typename"] == "NotFoundError"
    assert only(await dashboard.gql(CREATE, {"input": workflow_input()}))["__typename"] == (
        "NotFoundError"
    )


async def test_an_operator_token_runs_but_does_not_edit(alice: Caller) -> None:
    workflow = await create_workflow(alice, "CI")
    ci = await scoped(alice, role="operator")
    started = only(await ci.gql(EXECUTE, {"id": workflow["id"]}))
    assert started["__typename"] == "Execution", started
    edit = {"id": workflow["id"], "input": workflow_input("changed"), "v": workflow["version"]}
    assert only(await ci.gql(UPDATE, edit))["__typename"] == "ForbiddenError"


async def test_a_scoped_token_of_an_admin_is_no_admin_and_makes_no_tokens(
    make_caller: MakeCaller,
) -> None:
    admin = await make_caller("root", admin=True)
    limited = await scoped(admin, role="owner")
    create_user = 'mutation { createUser(name: "eve") { __typename } }'
    assert only(await limited.gql(create_user))["__typename"] == "ForbiddenError"
    assert (await limited.gql("{ users { id } }"))["users"] == []
    another = only(await limited.gql(CREATE_TOKEN, {"name": "wider"}))
    assert another["__typename"] == "ForbiddenError"
    workspace = only(await limited.gql(CREATE_WORKSPACE, {"name": "Mine"}))
    assert workspace["__typename"] == "ForbiddenError"
    token_id = (await admin.gql("{ apiTokens { id } }"))["apiTokens"][0]["id"]
    revoke = "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }"
    assert only(await limited.gql(revoke, {"id": token_id}))["__typename"] == "NotFoundError"
    # The admin's own token still is one.
    assert (await admin.gql("{ users { name } }"))["users"]


async def test_bad_scopes_are_refused_and_store_nothing(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    bobs = (await bob.gql("{ viewer { personalWorkspace { id } } }"))["viewer"]
    before = await db_state()
    unknown = only(await alice.gql(CREATE_TOKEN, {"name": "x", "role": "superuser"}))
    assert unknown == {
        "__typename": "ValidationError",
        "problems": [{"code": "UNKNOWN_ROLE", "field": "role"}],
    }
    for workspace in (bobs["personalWorkspace"]["id"], "no-such", "a\x00b", "x" * 300):
        missing = only(await alice.gql(CREATE_TOKEN, {"name": "x", "ws": workspace}))
        assert missing["__typename"] == "NotFoundError", workspace
    assert await db_state() == before


async def test_a_scoped_token_leaves_a_workspace_only_if_it_may_manage_members(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    workspace_id = await team(alice, {"admin": bob})
    leave = {"ws": workspace_id, "user": bob.user_id}
    for cap in ("viewer", "operator", "editor"):
        limited = await scoped(bob, ws=workspace_id, role=cap)
        before = await db_state()
        refused = only(await limited.gql(REMOVE_MEMBER, leave))
        assert refused["__typename"] == "ForbiddenError", (cap, refused)
        assert f"you have the role {cap}" in refused["message"]
        assert await db_state() == before
    admin_token = await scoped(bob, ws=workspace_id, role="admin")
    assert only(await admin_token.gql(REMOVE_MEMBER, leave))["__typename"] == "WorkspaceMember"


async def test_a_token_with_an_unknown_stored_role_authenticates_nobody(
    alice: Caller, database: Database, http: Any
) -> None:
    # A role this version does not know (written by a newer one, or by hand) must not
    # read as "no cap": the token would have all its user's rights.
    limited = await scoped(alice, role="viewer")
    async with database.transaction() as session:
        await session.exec(
            update(ApiToken)
            .where(col(ApiToken.token_hash) == hash_token(limited.token))
            .values(role="superuser")
        )
    response = await limited.post("{ viewer { name } }")
    assert response.status_code == 401, response.text
    assert (await alice.gql("{ viewer { name } }"))["viewer"]["name"] == "alice"


async def test_a_scoped_token_lists_no_unscoped_tokens(alice: Caller, bob: Caller) -> None:
    workspace_id = await team(alice, {"editor": bob})
    limited = await scoped(alice, ws=workspace_id, role="viewer")
    capped = await scoped(alice, role="operator")
    listing = "{ apiTokens { name workspaceId role } }"
    everything = (await alice.gql(listing))["apiTokens"]
    assert len(everything) == 3
    for token in (limited, capped):
        shown = (await token.gql(listing))["apiTokens"]
        assert shown and all(t["workspaceId"] or t["role"] for t in shown), shown
