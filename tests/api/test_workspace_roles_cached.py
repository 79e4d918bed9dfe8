"""Roles are part of the cached principal: a change shows at once in the process that made
it, however long tokens are cached (issue 18)."""

from __future__ import annotations

import pytest

from server.settings import Settings
from tests.conftest import Caller
from tests.factories import LIST, only, workflow_input
from tests.teams import CHANGE_ROLE, CREATE_IN, REMOVE_MEMBER, WORKSPACES, team


@pytest.fixture
def settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, token_cache_s=3600.0, secret_key="test-secret-key-for-credentials"
    )


async def test_changes_of_membership_apply_to_the_next_request(alice: Caller, bob: Caller) -> None:
    assert len((await bob.gql(WORKSPACES))["workspaces"]) == 1  # bob's principal is cached
    workspace_id = await team(alice, {"viewer": bob})
    assert len((await bob.gql(WORKSPACES))["workspaces"]) == 2
    create = {"input": workflow_input("Shared"), "ws": workspace_id}
    assert only(await bob.gql(CREATE_IN, create))["__typename"] == "ForbiddenError"
    only(await alice.gql(CHANGE_ROLE, {"ws": workspace_id, "user": bob.user_id, "role": "editor"}))
    assert only(await bob.gql(CREATE_IN, create))["__typename"] == "Workflow"
    only(await alice.gql(REMOVE_MEMBER, {"ws": workspace_id, "user": bob.user_id}))
    assert only(await bob.gql(CREATE_IN, create))["__typename"] == "NotFoundError"
    assert (await bob.gql(LIST, {}))["workflows"]["edges"] == []
