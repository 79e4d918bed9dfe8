"""Member changes decide on the caller's role as stored when they run, under the workspace's
lock: a principal cached by another replica, or one read before a removal that the change
waited for, gives no rights the caller no longer has (issue 18, review S2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from storage.db import Database
from tests.conftest import Caller, MakeCaller
from tests.factories import only
from tests.teams import (
    ADD_MEMBER,
    CHANGE_ROLE,
    DELETE_WORKSPACE,
    REMOVE_MEMBER,
    RENAME_WORKSPACE,
    WORKSPACE,
    team,
)


@pytest.fixture
async def elsewhere(
    database: Database, settings: Settings, registry: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """Another replica on the same database, which caches principals for an hour."""
    replica = create_app(
        settings.model_copy(update={"token_cache_s": 3600.0}), database=database, registry=registry
    )
    transport = httpx.ASGITransport(app=replica)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica.test") as client:
        yield client


def members(shown: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((m["user"]["name"], m["role"]) for m in shown["workspace"]["members"])


async def test_a_removed_member_changes_nothing_through_a_replica_that_cached_him(
    alice: Caller, bob: Caller, make_caller: MakeCaller, elsewhere: httpx.AsyncClient
) -> None:
    carol = await make_caller("carol")
    dave = await make_caller("dave")
    workspace_id = await team(alice, {"admin": bob, "owner": carol})
    bob_there, carol_there = replace(bob, http=elsewhere), replace(carol, http=elsewhere)
    for caller in (bob_there, carol_there):  # both principals now cached by the replica
        assert len((await caller.gql(WORKSPACE, {"id": workspace_id}))["workspace"]["members"]) == 3
    for removed in (bob, carol):
        gone = only(await alice.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": removed.user_id}))
        assert gone["__typename"] == "WorkspaceMember", gone
    attempts = [
        (bob_there, ADD_MEMBER, {"ws": workspace_id, "user": bob.user_id, "role": "admin"}),
        (bob_there, ADD_MEMBER, {"ws": workspace_id, "user": dave.user_id, "role": "editor"}),
        (bob_there, CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "viewer"}),
        (carol_there, CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "viewer"}),
        (carol_there, REMOVE_MEMBER, {"ws": workspace_id, "user": alice.user_id}),
        (carol_there, RENAME_WORKSPACE, {"id": workspace_id, "name": "Mine now"}),
        (carol_there, DELETE_WORKSPACE, {"id": workspace_id}),
    ]
    for caller, operation, variables in attempts:
        refused = only(await caller.gql(operation, variables))
        assert refused["__typename"] == "NotFoundError", (operation, variables, refused)
    shown = await alice.gql(WORKSPACE, {"id": workspace_id})
    assert shown["workspace"]["name"] == "Team"
    assert members(shown) == [("alice", "owner")]


async def test_a_demoted_admin_manages_nothing_through_a_replica_that_cached_him(
    alice: Caller, bob: Caller, make_caller: MakeCaller, elsewhere: httpx.AsyncClient
) -> None:
    carol = await make_caller("carol")
    workspace_id = await team(alice, {"admin": bob, "viewer": carol})
    bob_there = replace(bob, http=elsewhere)
    assert (await bob_there.gql(WORKSPACE, {"id": workspace_id}))["workspace"] is not None
    demoted = {"ws": workspace_id, "user": bob.user_id, "role": "viewer"}
    assert only(await alice.gql(CHANGE_ROLE, demoted))["role"] == "viewer"
    for operation, variables in [
        (CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "admin"}),
        (CHANGE_ROLE, {"ws": workspace_id, "user": carol.user_id, "role": "editor"}),
        (REMOVE_MEMBER, {"ws": workspace_id, "user": carol.user_id}),
    ]:
        refused = only(await bob_there.gql(operation, variables))
        assert refused["__typename"] == "ForbiddenError", (operation, refused)
        assert "you have the role viewer" in refused["message"]
    shown = await alice.gql(WORKSPACE, {"id": workspace_id})
    assert members(shown) == [("alice", "owner"), ("bob", "viewer"), ("carol", "viewer")]


async def test_two_owners_demoting_each_other_leave_one_owner(alice: Caller, bob: Caller) -> None:
    workspace_id = await team(alice, {"owner": bob})
    results = await asyncio.gather(
        alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "viewer"}),
        bob.gql(CHANGE_ROLE, {"ws": workspace_id, "user": alice.user_id, "role": "viewer"}),
    )
    kinds = sorted(only(result)["__typename"] for result in results)
    # The second to run is a viewer by then: refused, whichever order the lock gave.
    assert kinds == ["ForbiddenError", "WorkspaceMember"], results
    shown = await alice.gql(WORKSPACE, {"id": workspace_id})
    assert sorted(role for _, role in members(shown)) == ["owner", "viewer"]


async def test_a_removal_racing_the_removed_admin_adding_himself_again(
    alice: Caller, bob: Caller
) -> None:
    workspace_id = await team(alice, {"admin": bob})
    removal, readd = await asyncio.gather(
        alice.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": bob.user_id}),
        bob.gql(ADD_MEMBER, {"ws": workspace_id, "user": bob.user_id, "role": "admin"}),
    )
    assert only(removal)["__typename"] == "WorkspaceMember", removal
    # Whether bob's change ran before or after the removal, it gave him nothing back.
    assert only(readd)["__typename"] in ("ForbiddenError", "NotFoundError", "ValidationError")
    shown = await alice.gql(WORKSPACE, {"id": workspace_id})
    assert members(shown) == [("alice", "owner")]
