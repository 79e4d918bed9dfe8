"""Sharing credentials with other workspaces and moving workflows between workspaces: who
may, what the other workspace sees and uses, and every bad input as a typed result that
changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import col, select, update

import resolvers.credentials as resolvers_credentials
import resolvers.workflows as resolvers_workflows
import storage.credentials as storage_credentials
import storage.executions as storage_executions
import storage.moves as storage_moves
from server.app import create_app
from storage import credential_shares
from storage.db import Database
from storage.models import Credential, Membership, Workflow
from tests.api.test_credentials import DELETE_CREDENTIAL, UPDATE_CREDENTIAL
from tests.api.test_credentials import create as create_credential
from tests.api.test_declarative_types import CREATE_TYPE
from tests.api.test_durable_wait import until as until_status
from tests.api.test_executions import EXECUTE, create, finished
from tests.api.test_export_import import EXPORT, IMPORT
from tests.api.test_http_node import SECRET, MockApi, api, close_http
from tests.api.test_node_type_policies import SET_ENABLED
from tests.conftest import Caller, MakeCaller
from tests.factories import (
    GET,
    PIN_NODE_DATA,
    SET_ACTIVE,
    UPDATE,
    edge,
    node,
    only,
    publish_workflow,
)
from tests.polling import until
from tests.teams import (
    CHANGE_ROLE,
    CREATE_IN,
    DELETE_WORKSPACE,
    MOVE,
    ROLES,
    SHARE,
    UNSHARE,
    add_member,
    create_workspace,
    team,
)

__all__ = ["api"]  # the local HTTP server fixture, used here too

LIST = """
{ credentials { id name workspaceId fields secretFields sharedWith { id } sharedFrom { id } } }
"""
UPDATE_DOMAINS = """
mutation($id: ID!, $input: CredentialUpdateInput!) {
  updateCredential(id: $id, input: $input) {
    __typename
    ... on Credential { id allowedDomains }
    ... on ValidationError { message problems { code message field } }
  }
}
"""
PING_TYPE = {"displayName": "Ping", "requestTemplate": {"url": "http://127.0.0.1:9/ping"}}


@pytest.fixture
async def app(database: Database, settings: Any, registry: Any) -> AsyncIterator[Any]:
    allowed = settings.model_copy(update={"http_allowed_networks": ["127.0.0.1/32"]})
    app = create_app(allowed, database=database, registry=registry)
    yield app
    await close_http(app)


async def personal(caller: Caller) -> str:
    viewer = await caller.gql("{ viewer { personalWorkspace { id } } }")
    return str(viewer["viewer"]["personalWorkspace"]["id"])


async def token(
    caller: Caller,
    workspace_id: str,
    name: str = "API token",
    allowed: tuple[str, ...] | None = ("127.0.0.1",),
) -> str:
    """A bearer token credential of the workspace, sent only to `allowed` (None: anywhere)."""
    created = await create_credential(
        caller,
        name=name,
        kind="bearer_token",
        data={"token": SECRET},
        workspaceId=workspace_id,
        allowedDomains=None if allowed is None else list(allowed),
    )
    assert created["__typename"] == "Credential", created
    return str(created["id"])


def http_nodes(url: str, credential_id: str) -> list[dict[str, Any]]:
    return [
        node("start", "Start", "manual_trigger"),
        node(
            "call",
            "Call",
            "http_request",
            parameters={"url": url},
            credentials={"bearer_token": credential_id},
        ),
    ]


async def create_in(caller: Caller, workspace_id: str, name: str, **graph: Any) -> str:
    graph.setdefault("nodes", [node("start", "Start", "manual_trigger")])
    graph.setdefault("edges", [])
    created = only(
        await caller.gql(CREATE_IN, {"input": {"name": name, **graph}, "ws": workspace_id})
    )
    assert created["__typename"] == "Workflow", created
    return str(created["id"])


# Sharing


async def test_a_shared_credential_is_used_by_the_other_workspace_without_being_seen(
    app: Any, alice: Caller, bob: Caller, api: MockApi
) -> None:
    a = await personal(alice)
    b = await create_workspace(alice, "B")
    assert (await add_member(alice, b, bob, "editor"))["__typename"] == "WorkspaceMember"
    credential_id = await token(alice, a)
    shared = only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))
    assert shared["__typename"] == "Credential", shared
    assert shared["sharedWith"] == [{"id": b, "name": "B"}] and shared["sharedFrom"] is None

    # Bob (a member of B only) sees it, marked as shared, names only.
    (listed,) = (await bob.gql(LIST))["credentials"]
    assert listed["id"] == credential_id and listed["workspaceId"] == a
    assert listed["sharedFrom"] == {"id": a} and listed["sharedWith"] == []
    assert listed["fields"] == {} and listed["secretFields"] == []

    # He chooses it in a node of B, and the request gets the credential.
    workflow_id = await create_in(
        bob,
        b,
        "Uses it",
        nodes=http_nodes(f"{api.base}/echo", credential_id),
        edges=[edge("start", "call")],
    )
    started = only(await bob.gql(EXECUTE, {"id": workflow_id}))
    assert started["__typename"] == "Execution", started
    execution = await finished(app, bob, started["id"])
    assert execution["status"] == "SUCCEEDED", execution
    assert [request.headers["Authorization"] for request in api.seen] == [f"Bearer {SECRET}"]

    # He cannot change, delete or share it on; alice still sees it as before.
    renamed = only(await bob.gql(UPDATE_CREDENTIAL, {"id": credential_id, "input": {"name": "x"}}))
    assert renamed["__typename"] == "ForbiddenError", renamed
    deleted = only(await bob.gql(DELETE_CREDENTIAL, {"id": credential_id}))
    assert deleted["__typename"] == "ForbiddenError", deleted
    reshared = only(await bob.gql(SHARE, {"id": credential_id, "ws": await personal(bob)}))
    assert reshared["__typename"] == "ForbiddenError", reshared
    (own,) = [c for c in (await alice.gql(LIST))["credentials"] if c["id"] == credential_id]
    assert own["name"] == "API token" and own["secretFields"] == ["token"]
    assert own["sharedWith"] == [{"id": b}] and own["sharedFrom"] is None


async def test_a_shared_secret_goes_only_to_its_allowed_domains(
    app: Any, alice: Caller, bob: Caller, api: MockApi
) -> None:
    """An editor of the workspace a credential is shared with cannot read its secret by
    pointing a node at a server that echoes the request: the credential goes only to its
    `allowedDomains`, and to any other host nothing is sent."""
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice), allowed=("127.0.0.1",))
    assert only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))["__typename"] == (
        "Credential"
    )
    port = api.base.rsplit(":", 1)[1]
    for url in (f"http://localhost:{port}/echo", f"http://LocalHost.:{port}/echo"):
        workflow_id = await create_in(
            bob,
            b,
            f"Leak {url}",
            nodes=http_nodes(url, credential_id),
            edges=[edge("start", "call")],
        )
        started = only(await bob.gql(EXECUTE, {"id": workflow_id}))
        execution = await finished(app, bob, started["id"])
        assert execution["status"] == "FAILED", execution
        (run,) = [r for r in execution["nodeRuns"] if r["nodeId"] == "call"]
        assert run["error"]["type"] == "CREDENTIAL_HOST_NOT_ALLOWED", run
        message = execution["error"]["message"]
        assert "Call" in message and "localhost" in message and "127.0.0.1" in message
        assert SECRET not in json.dumps(execution)
    assert api.seen == []  # nothing was sent

    # To an allowed host it works (and that host does get the secret).
    workflow_id = await create_in(
        bob,
        b,
        "Allowed",
        nodes=http_nodes(f"{api.base}/echo", credential_id),
        edges=[edge("start", "call")],
    )
    started = only(await bob.gql(EXECUTE, {"id": workflow_id}))
    execution = await finished(app, bob, started["id"])
    assert execution["status"] == "SUCCEEDED", execution
    assert [request.headers["Authorization"] for request in api.seen] == [f"Bearer {SECRET}"]


async def test_a_credential_without_allowed_domains_is_not_shared(
    alice: Caller, db_state: Any
) -> None:
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, await personal(alice), allowed=None)
    before = await db_state()
    refused = only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))
    assert refused["__typename"] == "ValidationError", refused
    assert [(p["code"], p["field"]) for p in refused["problems"]] == [
        ("CREDENTIAL_NOT_RESTRICTED", "allowedDomains")
    ]
    assert await db_state() == before

    # Restricted, it is shared; clearing the restriction while shared is refused.
    changed = await alice.gql(
        UPDATE_DOMAINS, {"id": credential_id, "input": {"allowedDomains": ["*.Example.COM."]}}
    )
    assert changed["updateCredential"]["allowedDomains"] == ["*.example.com"], changed
    assert only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))["__typename"] == (
        "Credential"
    )
    before = await db_state()
    cleared = only(
        await alice.gql(UPDATE_DOMAINS, {"id": credential_id, "input": {"allowedDomains": []}})
    )
    assert cleared["__typename"] == "ValidationError", cleared
    assert [(p["code"], p["field"]) for p in cleared["problems"]] == [
        ("CREDENTIAL_NOT_RESTRICTED", "allowedDomains")
    ]
    assert await db_state() == before
    # Unshared, it may go anywhere again.
    await alice.gql(UNSHARE, {"id": credential_id, "ws": b})
    cleared = only(
        await alice.gql(UPDATE_DOMAINS, {"id": credential_id, "input": {"allowedDomains": []}})
    )
    assert cleared["__typename"] == "Credential" and cleared["allowedDomains"] is None, cleared


@pytest.mark.parametrize(
    "entry", ["https://api.example.com", "api.example.com:443", "a@b.com", "api.*.com", "*"]
)
async def test_an_allowed_domain_that_is_not_a_host_is_refused(
    alice: Caller, db_state: Any, entry: str
) -> None:
    before = await db_state()
    created = await create_credential(
        alice,
        name="Key",
        kind="bearer_token",
        data={"token": SECRET},
        allowedDomains=["api.example.com", entry],
    )
    assert created["__typename"] == "ValidationError", created
    assert [(p["code"], p["field"]) for p in created["problems"]] == [
        ("INVALID_DOMAIN", "allowedDomains")
    ]
    assert "allowedDomains[1]" in created["problems"][0]["message"]
    assert await db_state() == before
    credential_id = await token(alice, await personal(alice))
    before = await db_state()
    refused = only(
        await alice.gql(UPDATE_DOMAINS, {"id": credential_id, "input": {"allowedDomains": [entry]}})
    )
    assert refused["__typename"] == "ValidationError", refused
    assert await db_state() == before


async def test_unsharing_gives_a_node_issue_and_runs_fail_at_that_node(
    app: Any, alice: Caller, bob: Caller, api: MockApi
) -> None:
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    workflow_id = await create_in(
        bob,
        b,
        "Uses it",
        nodes=http_nodes(f"{api.base}/echo", credential_id),
        edges=[edge("start", "call")],
    )
    unshared = only(await alice.gql(UNSHARE, {"id": credential_id, "ws": b}))
    assert unshared["__typename"] == "Credential" and unshared["sharedWith"] == [], unshared

    workflow = (await bob.gql(GET, {"id": workflow_id}))["workflow"]
    (call,) = [n for n in workflow["nodes"] if n["id"] == "call"]
    assert [(i["code"], i["field"]) for i in call["issues"]] == [
        ("CREDENTIAL_NOT_SHARED", "credentials.bearer_token")
    ]
    assert (await bob.gql(LIST))["credentials"] == []
    started = only(await bob.gql(EXECUTE, {"id": workflow_id}))
    execution = await finished(app, bob, started["id"])
    assert execution["status"] == "FAILED", execution
    (run,) = [r for r in execution["nodeRuns"] if r["nodeId"] == "call"]
    assert run["status"] == "FAILED" and run["error"]["type"] == "CREDENTIAL_NOT_FOUND", run
    assert api.seen == []  # the request was never made
    # A save keeping the reference is refused; the stored draft stays as it was.
    kept = {"name": "Renamed", "nodes": workflow["nodes"], "edges": [edge("start", "call")]}
    for data in kept["nodes"]:
        data.pop("issues")
    saved = only(
        await bob.gql(UPDATE, {"id": workflow_id, "input": kept, "v": workflow["version"]})
    )
    assert _problems(saved) == [("UNKNOWN_CREDENTIAL", "call", "credentials.bearer_token")]

    # Sharing again removes the issue.
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    workflow = (await bob.gql(GET, {"id": workflow_id}))["workflow"]
    assert all(not n["issues"] for n in workflow["nodes"]), workflow["nodes"]


async def test_an_exported_workflow_links_the_shared_credential_again_on_import(
    alice: Caller, bob: Caller
) -> None:
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    workflow_id = await create_in(
        bob,
        b,
        "Uses it",
        nodes=http_nodes("http://127.0.0.1:9/", credential_id),
        edges=[edge("start", "call")],
    )
    document = only(await bob.gql(EXPORT, {"id": workflow_id}))["document"]
    imported = only(await bob.gql(IMPORT, {"document": document, "workspaceId": b}))
    assert imported["__typename"] == "Workflow", imported
    (call,) = [n for n in imported["nodes"] if n["id"] == "call"]
    assert call["credentials"] == {"bearer_token": credential_id} and not call["issues"], call


async def test_sharing_to_a_workspace_you_do_not_belong_to_is_not_found(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    credential_id = await token(alice, await personal(alice))
    bobs = await personal(bob)
    before = await db_state()
    refused = only(await alice.gql(SHARE, {"id": credential_id, "ws": bobs}))
    assert refused["__typename"] == "NotFoundError" and refused["id"] == bobs, refused
    missing = only(await alice.gql(SHARE, {"id": credential_id, "ws": "no-such-workspace"}))
    assert missing["__typename"] == "NotFoundError", missing
    assert await db_state() == before


async def test_sharing_twice_is_one_share(alice: Caller, db_state: Any) -> None:
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, await personal(alice))
    first = only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))
    after_first = await db_state()
    second = only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))
    assert first == second and second["sharedWith"] == [{"id": b, "name": "B"}], second
    assert await db_state() == after_first
    own = only(await alice.gql(SHARE, {"id": credential_id, "ws": await personal(alice)}))
    assert own["__typename"] == "ValidationError", own
    assert [p["code"] for p in own["problems"]] == ["SAME_WORKSPACE"]
    assert own["problems"][0]["field"] == "workspaceId"


async def test_unsharing_what_is_not_shared_is_not_found(alice: Caller, db_state: Any) -> None:
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, await personal(alice))
    before = await db_state()
    refused = only(await alice.gql(UNSHARE, {"id": credential_id, "ws": b}))
    assert refused["__typename"] == "NotFoundError" and refused["id"] == b, refused
    assert "not shared" in refused["message"]
    assert await db_state() == before


async def test_only_owners_and_admins_share(make_caller: MakeCaller, db_state: Any) -> None:
    callers = {role: await make_caller(role) for role in ROLES}
    members = {role: caller for role, caller in callers.items() if role != "owner"}
    workspace_id = await team(callers["owner"], members)
    credential_id = await token(callers["owner"], workspace_id)
    for role in ("viewer", "operator", "editor"):
        before = await db_state()
        target = await personal(callers[role])
        refused = only(await callers[role].gql(SHARE, {"id": credential_id, "ws": target}))
        assert refused["__typename"] == "ForbiddenError", (role, refused)
        assert "admin" in refused["message"]
        refused = only(await callers[role].gql(UNSHARE, {"id": credential_id, "ws": target}))
        assert refused["__typename"] == "ForbiddenError", (role, refused)
        assert await db_state() == before, role
    for role in ("admin", "owner"):
        target = await personal(callers[role])
        shared = only(await callers[role].gql(SHARE, {"id": credential_id, "ws": target}))
        assert shared["__typename"] == "Credential", (role, shared)


async def test_deleting_a_shared_credential_leaves_a_node_issue_in_the_other_workspace(
    alice: Caller, bob: Caller
) -> None:
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    workflow_id = await create_in(
        bob,
        b,
        "Uses it",
        nodes=http_nodes("http://127.0.0.1:9/", credential_id),
        edges=[edge("start", "call")],
    )
    deleted = only(await alice.gql(DELETE_CREDENTIAL, {"id": credential_id}))
    assert deleted["__typename"] == "Deleted", deleted
    workflow = (await bob.gql(GET, {"id": workflow_id}))["workflow"]
    (call,) = [n for n in workflow["nodes"] if n["id"] == "call"]
    assert [i["code"] for i in call["issues"]] == ["CREDENTIAL_NOT_SHARED"]


async def test_deleting_the_owning_workspace_leaves_a_node_issue_in_the_other(
    alice: Caller, bob: Caller
) -> None:
    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, a)
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    workflow_id = await create_in(
        bob,
        b,
        "Uses it",
        nodes=http_nodes("http://127.0.0.1:9/", credential_id),
        edges=[edge("start", "call")],
    )
    deleted = only(await alice.gql(DELETE_WORKSPACE, {"id": a}))
    assert deleted["__typename"] == "Deleted", deleted
    workflow = (await bob.gql(GET, {"id": workflow_id}))["workflow"]
    (call,) = [n for n in workflow["nodes"] if n["id"] == "call"]
    assert [i["code"] for i in call["issues"]] == ["CREDENTIAL_NOT_SHARED"]


# Moving


def _problems(result: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    assert result["__typename"] == "ValidationError", result
    return sorted((p["code"], p["nodeId"], p["field"]) for p in result["problems"])


async def test_a_move_is_refused_with_every_problem_at_once(alice: Caller, db_state: Any) -> None:
    a = await personal(alice)
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, a)
    declared = only(await alice.gql(CREATE_TYPE, {"ws": a, "name": "ws.ping", "input": PING_TYPE}))
    assert declared["__typename"] == "NodeType", declared
    helper = await create_in(alice, a, "Helper")
    moving = await create_in(
        alice,
        a,
        "Moving",
        nodes=[
            node("start", "Start", "manual_trigger"),
            node(
                "call",
                "Call",
                "http_request",
                parameters={"url": "http://127.0.0.1:9/"},
                credentials={"bearer_token": credential_id},
            ),
            node("sub", "Sub", "execute_workflow", parameters={"workflowId": helper}),
            node("ping", "Ping", "ws.ping"),
        ],
        edges=[edge("start", "call"), edge("call", "sub"), edge("sub", "ping")],
    )
    await create_in(
        alice,
        a,
        "Caller",
        nodes=[
            node("start", "Start", "manual_trigger"),
            node("calls", "Calls", "execute_workflow", parameters={"workflowId": moving}),
        ],
        edges=[edge("start", "calls")],
    )
    before = await db_state()
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert _problems(refused) == [
        ("CALLED_BY_WORKFLOW", "calls", "parameters.workflowId"),
        ("CREDENTIAL_NOT_AVAILABLE", "call", "credentials.bearer_token"),
        ("NODE_TYPE_NOT_AVAILABLE", "ping", "type"),
        ("SUBWORKFLOW_OUTSIDE", "sub", "parameters.workflowId"),
    ]
    assert "Caller" in next(
        p["message"] for p in refused["problems"] if p["code"] == "CALLED_BY_WORKFLOW"
    )
    assert await db_state() == before


async def test_a_sub_workflow_call_that_would_cross_workspaces_refuses_the_move(
    alice: Caller, db_state: Any
) -> None:
    a = await personal(alice)
    b = await create_workspace(alice, "B")
    helper = await create_in(alice, a, "Helper")
    moving = await create_in(
        alice,
        a,
        "Moving",
        nodes=[
            node("start", "Start", "manual_trigger"),
            node("sub", "Sub", "execute_workflow", parameters={"workflowId": helper}),
        ],
        edges=[edge("start", "sub")],
    )
    before = await db_state()
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert _problems(refused) == [("SUBWORKFLOW_OUTSIDE", "sub", "parameters.workflowId")]
    assert await db_state() == before
    # Nor can the called workflow go first: the caller staying behind would cross too.
    refused = only(await alice.gql(MOVE, {"id": helper, "ws": b}))
    assert _problems(refused) == [("CALLED_BY_WORKFLOW", "sub", "parameters.workflowId")]
    assert await db_state() == before


async def test_a_credential_the_target_cannot_use_refuses_the_move_until_shared(
    alice: Caller, db_state: Any
) -> None:
    a = await personal(alice)
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, a)
    moving = await create_in(
        alice,
        a,
        "Moving",
        nodes=http_nodes("http://127.0.0.1:9/", credential_id),
        edges=[edge("start", "call")],
    )
    before = await db_state()
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert _problems(refused) == [("CREDENTIAL_NOT_AVAILABLE", "call", "credentials.bearer_token")]
    assert await db_state() == before
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    moved = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert moved["__typename"] == "Workflow" and moved["workspace"]["id"] == b, moved


async def test_moving_to_a_workspace_you_cannot_create_in(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    b = await create_workspace(bob, "Bob's team")
    await add_member(bob, b, alice, "viewer")
    moving = await create_in(alice, await personal(alice), "Moving")
    elsewhere = await personal(bob)
    theirs = await create_in(bob, elsewhere, "Bob's")
    before = await db_state()
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert refused["__typename"] == "ForbiddenError", refused
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": elsewhere}))
    assert refused["__typename"] == "NotFoundError" and refused["id"] == elsewhere, refused
    refused = only(await alice.gql(MOVE, {"id": theirs, "ws": await personal(alice)}))
    assert refused["__typename"] == "NotFoundError" and refused["id"] == theirs, refused
    assert await db_state() == before


async def test_moving_to_the_same_workspace_is_refused(alice: Caller, db_state: Any) -> None:
    a = await personal(alice)
    moving = await create_in(alice, a, "Moving")
    before = await db_state()
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": a}))
    assert _problems(refused) == [("SAME_WORKSPACE", None, "workspaceId")]
    assert await db_state() == before


async def test_a_workflow_moves_with_its_executions_and_pinned_data(
    app: Any, alice: Caller, bob: Caller
) -> None:
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "operator")
    moving = await create(
        alice, [node("start", "Start", "manual_trigger"), node("n", "N")], [edge("start", "n")]
    )
    started = only(await alice.gql(EXECUTE, {"id": moving}))
    await finished(app, alice, started["id"])
    workflow = (await alice.gql(GET, {"id": moving}))["workflow"]
    pinned = only(
        await alice.gql(
            PIN_NODE_DATA,
            {"wf": moving, "nodeId": "n", "items": [{"a": 1}], "v": workflow["version"]},
        )
    )
    assert pinned["__typename"] == "Workflow", pinned
    assert (await bob.gql(GET, {"id": moving}))["workflow"] is None
    moved = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert moved["__typename"] == "Workflow", moved
    # Bob, a member of B only, now reads it, its pinned data and its execution.
    seen = await bob.gql(
        "query($id: ID!, $e: ID!) { workflow(id: $id) { id nodes { id pinnedData } }"
        " execution(id: $e) { id status } }",
        {"id": moving, "e": started["id"]},
    )
    assert seen["workflow"]["id"] == moving and seen["execution"]["status"] == "SUCCEEDED"
    (n,) = [n for n in seen["workflow"]["nodes"] if n["id"] == "n"]
    assert n["pinnedData"] == [{"a": 1}], n


async def test_an_active_workflow_does_not_move_where_its_node_types_are_disabled(
    alice: Caller, db_state: Any
) -> None:
    b = await create_workspace(alice, "B")
    moving = await create_in(
        alice,
        await personal(alice),
        "Active",
        nodes=[node("start", "Start", "manual_trigger"), node("n", "N")],
        edges=[edge("start", "n")],
    )
    await publish_workflow(alice, {"id": moving, "version": 1})
    activated = only(await alice.gql(SET_ACTIVE, {"id": moving, "active": True}))
    assert activated["active"] is True, activated
    disabled = only(await alice.gql(SET_ENABLED, {"name": "noop", "enabled": False, "ws": b}))
    assert disabled["__typename"] == "NodeType", disabled
    before = await db_state()
    refused = only(await alice.gql(MOVE, {"id": moving, "ws": b}))
    assert _problems(refused) == [("NODE_TYPE_DISABLED", "n", "type")]
    assert await db_state() == before


# Races (PostgreSQL: SQLite has one writer, so these never interleave there)


async def _held_by(database: Database, session: Any, task: asyncio.Task[Any]) -> None:
    """Wait until `task` waits for a lock that `session`'s transaction holds (or is done)."""
    pid = (await session.exec(text("SELECT pg_backend_pid()"))).one()[0]
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")

    async def blocked() -> bool:
        async with database.engine.connect() as connection:
            count = (await connection.execute(waiting, {"pid": pid})).scalar_one()
        return task.done() or count > 0

    await until(blocked, what="the concurrent request waiting for the lock")
    assert not task.done(), task.result()


async def _executions_of(database: Database, workflow_id: str) -> list[tuple[str, str]]:
    async with database.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT workspace_id, status FROM executions WHERE workflow_id = :w"),
            {"w": workflow_id},
        )
        return [(row[0], row[1]) for row in rows]


@pytest.mark.parametrize("when", ["before the move's writes", "after the move's writes"])
async def test_a_run_started_during_a_move_is_not_created_in_the_workspace_it_left(
    app: Any,
    alice: Caller,
    bob: Caller,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    when: str,
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: a start and a move cannot interleave")
    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    await add_member(alice, a, bob, "editor")  # bob: a member of A only
    workflow_id = await create_in(alice, a, "W")
    original = storage_moves.move
    started: list[asyncio.Task[Any]] = []

    async def racing(session: Any, workflow: Any, target: str) -> None:
        # A start (a webhook or a schedule in life) comes while the move holds the workflow.
        if when == "after the move's writes":
            await original(session, workflow, target)
        started.append(asyncio.create_task(bob.gql(EXECUTE, {"id": workflow_id})))
        await _held_by(database, session, started[0])
        if when == "before the move's writes":
            await original(session, workflow, target)

    monkeypatch.setattr(storage_moves, "move", racing)
    moved = only(await alice.gql(MOVE, {"id": workflow_id, "ws": b}))
    assert moved["__typename"] == "Workflow", moved
    answer = only(await started[0])
    assert answer["__typename"] == "NotFoundError", answer
    assert await _executions_of(database, workflow_id) == []


async def test_a_run_started_before_a_move_refuses_it(
    app: Any, alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start's transaction holds the workflow first: the move waits, then sees the run."""
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: a start and a move cannot interleave")
    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    workflow_id = await create_in(alice, a, "W")
    original = storage_executions.lock_workflows
    moving: list[asyncio.Task[Any]] = []

    async def racing(session: Any, rows: Any) -> None:
        await original(session, rows)
        moving.append(asyncio.create_task(alice.gql(MOVE, {"id": workflow_id, "ws": b})))
        await _held_by(database, session, moving[0])

    monkeypatch.setattr(storage_executions, "lock_workflows", racing)
    started = only(await alice.gql(EXECUTE, {"id": workflow_id}))
    assert started["__typename"] == "Execution", started
    monkeypatch.setattr(storage_executions, "lock_workflows", original)
    refused = only(await moving[0])
    assert refused["__typename"] == "ValidationError", refused
    assert [problem["code"] for problem in refused["problems"]] == ["HAS_RUNNING_EXECUTIONS"]
    await finished(app, alice, started["id"])
    assert [ws for ws, _ in await _executions_of(database, workflow_id)] == [a]


async def test_a_save_racing_a_move_cannot_keep_a_credential_the_target_cannot_use(
    alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: a save and a move cannot interleave")
    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, a)  # A's only, never shared with B
    workflow_id = await create_in(alice, a, "W")
    original = resolvers_workflows.reference_problems
    moved: list[Any] = []

    async def racing(session: Any, graph: Any, workspace_id: str) -> Any:
        found = await original(session, graph, workspace_id)
        if not moved:  # checked against A; the move to B commits before the save writes
            moved.append(only(await alice.gql(MOVE, {"id": workflow_id, "ws": b})))
        return found

    monkeypatch.setattr(resolvers_workflows, "reference_problems", racing)
    workflow = (await alice.gql(GET, {"id": workflow_id}))["workflow"]
    input = {
        "name": "W",
        "nodes": http_nodes("http://127.0.0.1:9/", credential_id),
        "edges": [edge("start", "call")],
    }
    saved = only(
        await alice.gql(UPDATE, {"id": workflow_id, "v": workflow["version"], "input": input})
    )
    assert moved[0]["__typename"] == "Workflow", moved
    assert saved["__typename"] == "VersionConflictError", saved
    after = (await alice.gql(GET, {"id": workflow_id}))["workflow"]
    assert [n["id"] for n in after["nodes"]] == ["start"], after


async def test_a_save_racing_an_unshare_keeps_the_node_issue(
    alice: Caller, bob: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: a save and an unshare cannot interleave")
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    nodes = http_nodes("http://127.0.0.1:9/", credential_id)
    workflow_id = await create_in(bob, b, "W", nodes=nodes, edges=[edge("start", "call")])
    original = resolvers_workflows.reference_problems
    unsharing: list[asyncio.Task[Any]] = []

    async def racing(session: Any, graph: Any, workspace_id: str) -> Any:
        found = await original(session, graph, workspace_id)
        if not unsharing:  # the save found the share; the unshare comes before it writes
            unsharing.append(
                asyncio.create_task(alice.gql(UNSHARE, {"id": credential_id, "ws": b}))
            )
            await _held_by(database, session, unsharing[0])
        return found

    monkeypatch.setattr(resolvers_workflows, "reference_problems", racing)
    workflow = (await bob.gql(GET, {"id": workflow_id}))["workflow"]
    input = {"name": "W2", "nodes": nodes, "edges": [edge("start", "call")]}
    saved = only(
        await bob.gql(UPDATE, {"id": workflow_id, "v": workflow["version"], "input": input})
    )
    assert saved["__typename"] == "Workflow", saved
    assert only(await unsharing[0])["__typename"] == "Credential"
    after = (await bob.gql(GET, {"id": workflow_id}))["workflow"]
    assert [i["code"] for n in after["nodes"] for i in n["issues"]] == ["CREDENTIAL_NOT_SHARED"]


async def test_ending_every_share_skips_one_a_concurrent_unshare_ended_first(
    alice: Caller, database: Database
) -> None:
    """deleteCredential and deleteWorkspace end every share of a credential: one that a
    concurrent unshare ended first is not there to end (it is not an error), and each
    workspace's drafts get their node issue once."""
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: two unshares cannot interleave")
    b = await create_workspace(alice, "B")
    c = await create_workspace(alice, "C")
    credential_id = await token(alice, await personal(alice))
    for workspace_id in (b, c):
        await alice.gql(SHARE, {"id": credential_id, "ws": workspace_id})
        nodes = http_nodes("http://127.0.0.1:9/", credential_id)
        await create_in(alice, workspace_id, "W", nodes=nodes, edges=[edge("start", "call")])

    async def end_all() -> None:
        async with database.transaction() as session:
            credential = await session.get(Credential, credential_id)
            assert credential is not None
            await credential_shares.unshare_all(session, credential)

    async with database.transaction() as first:
        credential = await first.get(Credential, credential_id)
        assert credential is not None
        await credential_shares.unshare(first, credential, b)
        ending = asyncio.create_task(end_all())
        await _held_by(database, first, ending)
    await ending
    async with database.session() as session:
        assert (await credential_shares.shared_with(session, [credential_id])) == {
            credential_id: []
        }
        drafts = (await session.exec(select(Workflow.node_issues))).all()
    assert sorted(
        [issue["code"] for found in (issues or {}).values() for issue in found] for issues in drafts
    ) == [["CREDENTIAL_NOT_SHARED"], ["CREDENTIAL_NOT_SHARED"]]


async def test_an_unshare_racing_the_deletion_of_the_credential_waits_for_it(
    alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer: an unshare and a deletion cannot interleave")
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    original = storage_credentials.workflows_using
    unsharing: list[asyncio.Task[Any]] = []

    async def racing(session: Any, row: Any) -> Any:
        found = await original(session, row)
        unsharing.append(asyncio.create_task(alice.gql(UNSHARE, {"id": credential_id, "ws": b})))
        await _held_by(database, session, unsharing[0])
        return found

    monkeypatch.setattr(storage_credentials, "workflows_using", racing)
    deleted = only(await alice.gql(DELETE_CREDENTIAL, {"id": credential_id}))
    assert deleted["__typename"] == "Deleted", deleted
    assert only(await unsharing[0])["__typename"] == "NotFoundError"


async def test_a_move_derives_the_not_shared_issue_again_for_the_target(alice: Caller) -> None:
    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, await personal(alice))
    for workspace_id in (a, b):
        await alice.gql(SHARE, {"id": credential_id, "ws": workspace_id})
    nodes = http_nodes("http://127.0.0.1:9/", credential_id)
    workflow_id = await create_in(alice, a, "W", nodes=nodes, edges=[edge("start", "call")])
    await alice.gql(UNSHARE, {"id": credential_id, "ws": a})  # the issue in A
    workflow = (await alice.gql(GET, {"id": workflow_id}))["workflow"]
    assert [i["code"] for n in workflow["nodes"] for i in n["issues"]] == ["CREDENTIAL_NOT_SHARED"]
    moved = only(await alice.gql(MOVE, {"id": workflow_id, "ws": b}))
    assert moved["__typename"] == "Workflow", moved  # B may use it
    workflow = (await alice.gql(GET, {"id": workflow_id}))["workflow"]
    assert [i["code"] for n in workflow["nodes"] for i in n["issues"]] == []


async def test_shared_with_names_only_the_callers_workspaces(alice: Caller, bob: Caller) -> None:
    a = await create_workspace(alice, "A")
    hidden = await create_workspace(alice, "Acquisition X")
    both = await create_workspace(alice, "Both")
    await add_member(alice, a, bob, "viewer")
    await add_member(alice, both, bob, "viewer")
    credential_id = await token(alice, a)
    for workspace_id in (hidden, both):
        await alice.gql(SHARE, {"id": credential_id, "ws": workspace_id})
    query = "{ credentials { id sharedWith { id name } sharedElsewhere } }"
    (seen,) = [c for c in (await bob.gql(query))["credentials"] if c["id"] == credential_id]
    assert seen["sharedWith"] == [{"id": both, "name": "Both"}] and seen["sharedElsewhere"] == 1
    (own,) = [c for c in (await alice.gql(query))["credentials"] if c["id"] == credential_id]
    assert [w["name"] for w in own["sharedWith"]] == ["Acquisition X", "Both"]
    assert own["sharedElsewhere"] == 0


async def test_sharing_needs_edit_in_the_workspace_shared_with(
    alice: Caller, bob: Caller, db_state: Any
) -> None:
    """Sharing rewrites that workspace's drafts' node issues: a viewer there may not."""
    target = await create_workspace(bob, "Bob's")
    await add_member(bob, target, alice, "viewer")
    credential_id = await token(alice, await personal(alice))
    before = await db_state()
    refused = only(await alice.gql(SHARE, {"id": credential_id, "ws": target}))
    assert refused["__typename"] == "ForbiddenError", refused
    assert await db_state() == before
    changed = await bob.gql(CHANGE_ROLE, {"ws": target, "user": alice.user_id, "role": "editor"})
    assert changed["changeMemberRole"]["__typename"] == "WorkspaceMember", changed
    shared = only(await alice.gql(SHARE, {"id": credential_id, "ws": target}))
    assert shared["__typename"] == "Credential", shared


async def test_sharing_decides_on_the_roles_stored_when_it_runs(
    alice: Caller, database: Database, monkeypatch: pytest.MonkeyPatch, db_state: Any
) -> None:
    """A caller demoted in the owner's workspace after the request's roles were read shares
    nothing: the roles are read again under the workspaces' locks."""
    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, a)
    original = resolvers_credentials.credentials.get_credential
    demoted: list[bool] = []

    async def demoting(session: Any, *args: Any, **kwargs: Any) -> Any:
        found = await original(session, *args, **kwargs)
        if not demoted:
            demoted.append(True)
            await session.exec(
                update(Membership)
                .where(col(Membership.workspace_id) == a, col(Membership.user_id) == alice.user_id)
                .values(role="editor")
            )
        return found

    monkeypatch.setattr(resolvers_credentials.credentials, "get_credential", demoting)
    refused = only(await alice.gql(SHARE, {"id": credential_id, "ws": b}))
    assert refused["__typename"] == "ForbiddenError", refused
    monkeypatch.setattr(resolvers_credentials.credentials, "get_credential", original)
    async with database.session() as session:
        assert (await credential_shares.shared_with(session, [credential_id]))[credential_id] == []


async def test_a_token_scoped_to_one_workspace_neither_shares_nor_moves_into_another(
    alice: Caller, db_state: Any
) -> None:
    from tests.api.test_scoped_tokens import scoped

    a = await create_workspace(alice, "A")
    b = await create_workspace(alice, "B")
    credential_id = await token(alice, a)
    workflow_id = await create_in(alice, a, "W")
    only_a = await scoped(alice, ws=a, role="owner")
    editor = await scoped(alice, role="editor")  # every workspace, editor at most
    before = await db_state()
    assert only(await only_a.gql(SHARE, {"id": credential_id, "ws": b}))["__typename"] == (
        "NotFoundError"
    )
    assert only(await only_a.gql(MOVE, {"id": workflow_id, "ws": b}))["__typename"] == (
        "NotFoundError"
    )
    assert only(await editor.gql(SHARE, {"id": credential_id, "ws": b}))["__typename"] == (
        "ForbiddenError"
    )
    assert await db_state() == before


async def test_a_queued_run_fails_at_the_node_after_an_unshare(
    app: Any, alice: Caller, bob: Caller, api: MockApi
) -> None:
    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    nodes = [
        node("start", "Start", "manual_trigger"),
        node("wait", "Wait", "wait", parameters={"amount": 60, "unit": "seconds"}),
        node("go", "Go", "manual_trigger"),
        http_nodes(f"{api.base}/echo", credential_id)[1],
    ]
    workflow_id = await create_in(
        bob,
        b,
        "One at a time",
        nodes=nodes,
        edges=[edge("start", "wait"), edge("go", "call")],
        settings={"maxConcurrentExecutions": 1},
    )
    # The first run holds the one slot, waiting; the second (from Go) queues behind it.
    first = only(await bob.gql(EXECUTE, {"id": workflow_id, "start": "start"}))
    await until_status(bob, first["id"], {"WAITING"})
    second = only(await bob.gql(EXECUTE, {"id": workflow_id, "start": "go"}))
    assert second.get("status") == "QUEUED", second
    assert only(await alice.gql(UNSHARE, {"id": credential_id, "ws": b}))["__typename"] == (
        "Credential"
    )
    cancel = "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }"
    await bob.gql(cancel, {"id": first["id"]})  # its slot goes to the queued run
    execution = await finished(app, bob, second["id"])
    assert execution["status"] == "FAILED", execution
    (run,) = [r for r in execution["nodeRuns"] if r["nodeId"] == "call"]
    assert run["error"]["type"] == "CREDENTIAL_NOT_FOUND", run
    assert api.seen == []


async def test_a_webhook_run_fails_at_the_node_after_an_unshare(
    app: Any, alice: Caller, bob: Caller, api: MockApi
) -> None:
    from tests.api.test_webhooks import activate
    from tests.live import serve

    b = await create_workspace(alice, "B")
    await add_member(alice, b, bob, "editor")
    credential_id = await token(alice, await personal(alice))
    await alice.gql(SHARE, {"id": credential_id, "ws": b})
    nodes = [
        node("hook", "Hook", "webhook", parameters={"path": "shared-cred", "methods": ["POST"]}),
        http_nodes(f"{api.base}/echo", credential_id)[1],
    ]
    workflow_id = await create_in(bob, b, "Hooked", nodes=nodes, edges=[edge("hook", "call")])
    assert (await activate(bob, workflow_id))["active"] is True
    await alice.gql(UNSHARE, {"id": credential_id, "ws": b})
    async with serve(app) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            response = await client.post("/webhook/shared-cred", json={})
    assert response.status_code == 202, response.text
    execution = await finished(app, bob, response.json()["executionId"])
    assert execution["status"] == "FAILED", execution
    (run,) = [r for r in execution["nodeRuns"] if r["nodeId"] == "call"]
    assert run["error"]["type"] == "CREDENTIAL_NOT_FOUND", run
    assert api.seen == []
