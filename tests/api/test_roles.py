"""The role-by-operation matrix, generated from the schema and checked cell by cell.

Every root field of the schema must have a row in `resolvers.permissions.OPERATIONS` and a
case here; each case is tried as each role of a shared workspace, weakest first (roles are
nested, so every refusal is tried on untouched data): a role the table refuses gets
ForbiddenError (or, for a read, does not see the data) and changes nothing; a role it allows
is not refused. An operation outside workspaces (the table's None) answers every role alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from resolvers.permissions import OPERATIONS
from storage.roles import Role, allows
from tests.api.test_credentials import CREATE_CREDENTIAL, DELETE_CREDENTIAL, UPDATE_CREDENTIAL
from tests.api.test_declarative_types import CREATE_TYPE, DELETE_TYPE, UPDATE_TYPE
from tests.api.test_executions import EXECUTE
from tests.api.test_export_import import EXPORT, IMPORT
from tests.api.test_expression_preview import EVALUATE, EVALUATE_PARAMETERS
from tests.api.test_isolation import MUTATION_CASES, AliceWorld
from tests.api.test_node_type_policies import SET_ENABLED
from tests.conftest import Caller, MakeCaller
from tests.factories import GET, GET_VERSION, LIST, PUBLISH, only, workflow_input
from tests.live import collect, serve
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
    WORKSPACE,
    WORKSPACES,
    add_member,
    create_workspace,
    team,
)

EXECUTION_RESULT = "__typename ... on Execution { id status }"
CANCEL = f"mutation($id: ID!) {{ cancelExecution(id: $id) {{ {EXECUTION_RESULT} }} }}"
RETRY = f"mutation($id: ID!) {{ retryExecution(id: $id) {{ {EXECUTION_RESULT} }} }}"
PING_TYPE = {"displayName": "Ping", "requestTemplate": {"url": "http://127.0.0.1:9/ping"}}


@dataclass
class Team:
    """A shared workspace with one member of each role, a published workflow, a finished
    execution of it, a credential, a declarative type; a second workspace where each of
    them is an editor (to move and share to); and an outsider."""

    workspace_id: str
    second_workspace_id: str
    callers: dict[str, Caller]
    outsider: Caller
    outsiders_token_id: str
    workflow: dict[str, Any]
    document: dict[str, Any]
    execution_id: str
    credential_id: str

    def isolation_world(self) -> AliceWorld:
        return AliceWorld(self.workflow, self.outsiders_token_id, self.workspace_id)


@pytest.fixture
async def world(app: Any, make_caller: MakeCaller) -> Team:
    callers = {role: await make_caller(role) for role in ROLES}
    owner = callers["owner"]
    members = {role: caller for role, caller in callers.items() if role != "owner"}
    workspace_id = await team(owner, members)
    second_workspace_id = await create_workspace(owner, "Second")
    for caller in members.values():
        added = await add_member(owner, second_workspace_id, caller, "editor")
        assert added["__typename"] == "WorkspaceMember", added
    outsider = await make_caller("outsider")
    token_id = (await outsider.gql("{ apiTokens { id } }"))["apiTokens"][0]["id"]
    created = only(
        await owner.gql(CREATE_IN, {"input": workflow_input("Team flow"), "ws": workspace_id})
    )
    workflow = (await owner.gql(GET, {"id": created["id"]}))["workflow"]
    published = only(await owner.gql(PUBLISH, {"id": workflow["id"], "v": workflow["version"]}))
    assert published["__typename"] == "Workflow", published
    started = only(await owner.gql(EXECUTE, {"id": workflow["id"]}))
    await app.state.services.submitter.wait(started["id"])
    document = only(await owner.gql(EXPORT, {"id": workflow["id"]}))["document"]
    credential = only(
        await owner.gql(
            CREATE_CREDENTIAL,
            {
                "input": {
                    "name": "Team token",
                    "kind": "bearer_token",
                    "data": {"token": "s3cr3t"},
                    "workspaceId": workspace_id,
                    "allowedDomains": ["api.example.com"],
                }
            },
        )
    )
    assert credential["__typename"] == "Credential", credential
    declared = only(
        await owner.gql(CREATE_TYPE, {"ws": workspace_id, "name": "ws.ping", "input": PING_TYPE})
    )
    assert declared["__typename"] == "NodeType", declared
    return Team(
        workspace_id=workspace_id,
        second_workspace_id=second_workspace_id,
        callers=callers,
        outsider=outsider,
        outsiders_token_id=token_id,
        workflow=published,
        document=document,
        execution_id=started["id"],
        credential_id=credential["id"],
    )


Variables = Callable[[Team], dict[str, Any]]

# Mutation -> (operation, its variables), besides the isolation test's workflow cases.
MUTATIONS: dict[str, tuple[str, Variables]] = {
    name: (operation, lambda t, variables=variables: variables(t.isolation_world()))
    for name, (operation, variables, _) in MUTATION_CASES.items()
}
MUTATIONS.update(
    {
        "createUser": MUTATIONS["createUser"],
        "createApiToken": (
            MUTATION_CASES["createApiToken"][0],
            lambda t: {"u": t.outsider.user_id},
        ),
        "revokeApiToken": MUTATIONS["revokeApiToken"],
        "createWorkflow": (
            CREATE_IN,
            lambda t: {"input": workflow_input("New"), "ws": t.workspace_id},
        ),
        "importWorkflow": (
            IMPORT,
            lambda t: {"document": t.document, "workspaceId": t.workspace_id},
        ),
        "executeWorkflow": (EXECUTE, lambda t: {"id": t.workflow["id"]}),
        "cancelExecution": (CANCEL, lambda t: {"id": t.execution_id}),
        "retryExecution": (RETRY, lambda t: {"id": t.execution_id}),
        "createCredential": (
            CREATE_CREDENTIAL,
            lambda t: {
                "input": {
                    "name": "Another",
                    "kind": "bearer_token",
                    "data": {"token": "x"},
                    "workspaceId": t.workspace_id,
                }
            },
        ),
        "updateCredential": (
            UPDATE_CREDENTIAL,
            lambda t: {"id": t.credential_id, "input": {"name": "Renamed"}},
        ),
        "deleteCredential": (DELETE_CREDENTIAL, lambda t: {"id": t.credential_id}),
        "shareCredential": (
            SHARE,
            lambda t: {"id": t.credential_id, "ws": t.second_workspace_id},
        ),
        "unshareCredential": (
            UNSHARE,
            lambda t: {"id": t.credential_id, "ws": t.second_workspace_id},
        ),
        "moveWorkflow": (
            MOVE,
            lambda t: {"id": t.workflow["id"], "ws": t.second_workspace_id},
        ),
        "createNodeType": (
            CREATE_TYPE,
            lambda t: {"ws": t.workspace_id, "name": "ws.pong", "input": PING_TYPE},
        ),
        "updateNodeType": (
            UPDATE_TYPE,
            lambda t: {"ws": t.workspace_id, "name": "ws.ping", "input": PING_TYPE},
        ),
        "deleteNodeType": (DELETE_TYPE, lambda t: {"ws": t.workspace_id, "name": "ws.ping"}),
        "setNodeTypeEnabled": (
            SET_ENABLED,
            lambda t: {"name": "noop", "enabled": False, "ws": t.workspace_id},
        ),
        "createWorkspace": (CREATE_WORKSPACE, lambda t: {"name": "Another team"}),
        "renameWorkspace": (RENAME_WORKSPACE, lambda t: {"id": t.workspace_id, "name": "New"}),
        "deleteWorkspace": (DELETE_WORKSPACE, lambda t: {"id": t.workspace_id}),
        "addWorkspaceMember": (
            ADD_MEMBER,
            lambda t: {"ws": t.workspace_id, "user": t.outsider.user_id, "role": "viewer"},
        ),
        "changeMemberRole": (
            CHANGE_ROLE,
            lambda t: {
                "ws": t.workspace_id,
                "user": t.callers["editor"].user_id,
                "role": "viewer",
            },
        ),
        # Anyone may leave: removing someone else is what the table decides.
        "removeWorkspaceMember": (
            REMOVE_MEMBER,
            lambda t: {"ws": t.workspace_id, "user": t.outsider.user_id},
        ),
    }
)

Sees = Callable[[Team, dict[str, Any]], bool]


def _workflow_ids(data: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in data["workflows"]["edges"]]


# Query or subscription -> (operation, its variables, whether the answer shows the team's data).
READS: dict[str, tuple[str, Variables, Sees]] = {
    "viewer": ("{ viewer { id } }", lambda t: {}, lambda t, d: d["viewer"] is not None),
    "users": ("{ users { id } }", lambda t: {}, lambda t, d: d["users"] == []),
    "apiTokens": ("{ apiTokens { id } }", lambda t: {}, lambda t, d: len(d["apiTokens"]) == 1),
    "nodeTypePackages": ("{ nodeTypePackages { __typename } }", lambda t: {}, lambda t, d: True),
    "credentialKinds": ("{ credentialKinds { name } }", lambda t: {}, lambda t, d: True),
    "systemStatus": (
        "{ systemStatus { __typename } }",
        lambda t: {},
        lambda t, d: d["systemStatus"]["__typename"] == "ForbiddenError",
    ),
    "workspaces": (
        WORKSPACES,
        lambda t: {},
        lambda t, d: t.workspace_id in {w["id"] for w in d["workspaces"]},
    ),
    "workspace": (
        WORKSPACE,
        lambda t: {"id": t.workspace_id},
        lambda t, d: d["workspace"] is not None and len(d["workspace"]["members"]) == 5,
    ),
    "workflows": (LIST, lambda t: {}, lambda t, d: _workflow_ids(d) == [t.workflow["id"]]),
    "workflow": (GET, lambda t: {"id": t.workflow["id"]}, lambda t, d: d["workflow"] is not None),
    "workflowVersion": (
        GET_VERSION,
        lambda t: {"id": t.workflow["id"], "version": 1},
        lambda t, d: d["workflowVersion"] is not None,
    ),
    "exportWorkflow": (
        EXPORT,
        lambda t: {"id": t.workflow["id"]},
        lambda t, d: d["exportWorkflow"]["__typename"] == "WorkflowDocument",
    ),
    "nodeTypes": (
        "query($ws: ID) { nodeTypes(workspaceId: $ws) { name } }",
        lambda t: {"ws": t.workspace_id},
        lambda t, d: "ws.ping" in {n["name"] for n in d["nodeTypes"]},
    ),
    "nodeType": (
        'query($ws: ID) { nodeType(name: "ws.ping", workspaceId: $ws) { name } }',
        lambda t: {"ws": t.workspace_id},
        lambda t, d: d["nodeType"] is not None,
    ),
    "nodeTypePolicyChanges": (
        "query($ws: ID) { nodeTypePolicyChanges(workspaceId: $ws) { id } }",
        lambda t: {"ws": t.workspace_id},
        lambda t, d: d["nodeTypePolicyChanges"] == [],
    ),
    "executions": (
        "{ executions { edges { node { id } } } }",
        lambda t: {},
        lambda t, d: [e["node"]["id"] for e in d["executions"]["edges"]] == [t.execution_id],
    ),
    "execution": (
        "query($id: ID!) { execution(id: $id) { id } }",
        lambda t: {"id": t.execution_id},
        lambda t, d: d["execution"] is not None,
    ),
    "evaluateExpression": (
        EVALUATE,
        lambda t: {"w": t.workflow["id"], "n": "n1", "e": "{{ 1 + 1 }}"},
        lambda t, d: d["evaluateExpression"]["__typename"] == "ExpressionValue",
    ),
    "evaluateParameters": (
        EVALUATE_PARAMETERS,
        lambda t: {"w": t.workflow["id"], "n": "n1"},
        lambda t, d: d["evaluateParameters"]["__typename"] != "NotFoundError",
    ),
    "auditLog": (
        "query($ws: ID) { auditLog(workspaceId: $ws) { __typename "
        "... on AuditEventConnection { edges { node { action } } } } }",
        lambda t: {"ws": t.workspace_id},
        lambda t, d: (
            d["auditLog"]["__typename"] == "AuditEventConnection"
            and len(d["auditLog"]["edges"]) > 0
        ),
    ),
    "credentials": (
        "{ credentials { id } }",
        lambda t: {},
        lambda t, d: [c["id"] for c in d["credentials"]] == [t.credential_id],
    ),
}


# Subscriptions, checked by test_each_role_follows_the_teams_executions_live.
LIVE = {"executionEvents", "executionUpdates"}


async def _root_fields(caller: Caller, kind: str) -> set[str]:
    data = await caller.gql(f"{{ __schema {{ {kind} {{ fields {{ name }} }} }} }}")
    return {field["name"] for field in data["__schema"][kind]["fields"]}


async def test_every_operation_has_a_decision_and_a_case(alice: Caller) -> None:
    operations = set()
    for kind in ("queryType", "mutationType", "subscriptionType"):
        operations |= await _root_fields(alice, kind)
    assert set(OPERATIONS) == operations
    assert set(MUTATIONS) | set(READS) | LIVE == operations


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
async def test_each_role_may_change_what_the_table_says(
    world: Team, db_state: Any, mutation: str
) -> None:
    operation, variables = MUTATIONS[mutation]
    action = OPERATIONS[mutation]
    answers = []
    for role in ROLES:
        before = await db_state()
        response = await world.callers[role].post(operation, variables(world))
        body = response.json()
        assert "errors" not in body, (role, body)
        answer = only(body["data"])["__typename"]
        answers.append(answer)
        if action is None:
            continue  # not a workspace's: the same answer for every role, below
        if allows(Role(role), action):
            assert answer != "ForbiddenError", (role, body)
        else:
            assert answer == "ForbiddenError", (role, body)
            assert await db_state() == before, role
    if action is None:
        assert len(set(answers)) == 1, answers


@pytest.mark.parametrize("read", sorted(READS))
async def test_each_role_reads_what_the_table_says(world: Team, read: str) -> None:
    operation, variables, sees = READS[read]
    action = OPERATIONS[read]

    async def shown_to(caller: Caller) -> bool:
        body = (await caller.post(operation, variables(world))).json()
        return "errors" not in body and sees(world, body["data"])

    seen = {role: await shown_to(world.callers[role]) for role in ROLES}
    if action is None:
        assert set(seen.values()) == {True}, seen
    else:
        assert seen == {role: allows(Role(role), action) for role in ROLES}
        assert not await shown_to(world.outsider)  # nothing of the team's


async def test_a_viewer_sees_credential_names_only(world: Team) -> None:
    query = "{ credentials { name fields secretFields } }"
    for role in ROLES:
        (shown,) = (await world.callers[role].gql(query))["credentials"]
        assert shown["name"] == "Team token"
        if role == "viewer":
            assert shown["fields"] == {} and shown["secretFields"] == [], shown
        else:
            assert shown["secretFields"] == ["token"], (role, shown)


async def test_each_role_follows_the_teams_executions_live(app: Any, world: Team) -> None:
    assert OPERATIONS["executionEvents"] == OPERATIONS["executionUpdates"]
    action = OPERATIONS["executionEvents"]
    assert action is not None and all(allows(Role(role), action) for role in ROLES)
    async with serve(app) as url:
        for role in ROLES:
            token = world.callers[role].token
            events = await asyncio.wait_for(collect(url, token, world.execution_id), 20)
            assert events[-1]["type"] == "EXECUTION_FINISHED", role
        with pytest.raises(TransportQueryError):
            await asyncio.wait_for(collect(url, world.outsider.token, world.execution_id), 20)
