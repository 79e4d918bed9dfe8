"""Nobody sees or changes anyone else's data: every query and mutation, tried as a second user.

The cases below are checked against the schema itself, so a new query or mutation without an
isolation case here makes `test_every_operation_has_an_isolation_case` fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.factories import (
    ADD_EDGE,
    ADD_NODE,
    CREATE,
    DELETE,
    DUPLICATE,
    GET,
    GET_VERSION,
    GET_WITH_VERSIONS,
    LIST,
    PIN_NODE_DATA,
    PUBLISH,
    REMOVE_EDGE,
    REMOVE_NODE,
    SET_ACTIVE,
    UNPIN_NODE_DATA,
    UPDATE,
    UPDATE_NODE,
    UPGRADE_NODE,
    create_workflow,
    edge,
    node,
    only,
    publish_workflow,
    workflow_input,
)
from tests.teams import ADD_MEMBER, CHANGE_ROLE, DELETE_WORKSPACE, REMOVE_MEMBER, RENAME_WORKSPACE


@dataclass
class AliceWorld:
    """What alice owns: a published, active workflow and a token."""

    workflow: dict[str, Any]
    token_id: str
    workspace_id: str


@pytest.fixture
async def world(alice) -> AliceWorld:
    workflow = await create_workflow(alice, "Alice's secret flow", tags=["private"])
    await publish_workflow(alice, workflow)
    activated = only(await alice.gql(SET_ACTIVE, {"id": workflow["id"], "active": True}))
    assert activated["active"] is True
    token_id = (await alice.gql("{ apiTokens { id } }"))["apiTokens"][0]["id"]
    viewer = (await alice.gql("{ viewer { personalWorkspace { id } } }"))["viewer"]
    workspace_id = viewer["personalWorkspace"]["id"]
    return AliceWorld(workflow=activated, token_id=token_id, workspace_id=workspace_id)


TOKEN_RESULT = "__typename ... on ForbiddenError { message } ... on NotFoundError { id }"

# Mutation name -> (operation, variables for alice's world, the result bob must get).
MUTATION_CASES: dict[str, tuple[str, Any, str]] = {
    "updateWorkflow": (
        UPDATE,
        lambda w: {"id": w.workflow["id"], "input": workflow_input("pwned"), "v": 2},
        "NotFoundError",
    ),
    "deleteWorkflow": (DELETE, lambda w: {"id": w.workflow["id"]}, "NotFoundError"),
    "duplicateWorkflow": (DUPLICATE, lambda w: {"id": w.workflow["id"]}, "NotFoundError"),
    "addNode": (
        ADD_NODE,
        lambda w: {"wf": w.workflow["id"], "node": node("x", "X"), "v": 1},
        "NotFoundError",
    ),
    "updateNode": (
        UPDATE_NODE,
        lambda w: {"wf": w.workflow["id"], "nodeId": "n1", "node": node("n1", "X"), "v": 1},
        "NotFoundError",
    ),
    "upgradeNode": (
        UPGRADE_NODE,
        lambda w: {"wf": w.workflow["id"], "nodeId": "n1", "to": 2, "v": 1},
        "NotFoundError",
    ),
    "removeNode": (
        REMOVE_NODE,
        lambda w: {"wf": w.workflow["id"], "nodeId": "n1", "v": 1},
        "NotFoundError",
    ),
    "addEdge": (
        ADD_EDGE,
        lambda w: {"wf": w.workflow["id"], "edge": edge("n0", "n2"), "v": 1},
        "NotFoundError",
    ),
    "removeEdge": (
        REMOVE_EDGE,
        lambda w: {"wf": w.workflow["id"], "edge": edge("n0", "n1"), "v": 1},
        "NotFoundError",
    ),
    "pinNodeData": (
        PIN_NODE_DATA,
        lambda w: {"wf": w.workflow["id"], "nodeId": "n1", "items": [{"x": 1}], "v": 1},
        "NotFoundError",
    ),
    "unpinNodeData": (
        UNPIN_NODE_DATA,
        lambda w: {"wf": w.workflow["id"], "nodeId": "n1", "v": 1},
        "NotFoundError",
    ),
    "executeNode": (
        """mutation($wf: ID!, $nodeId: ID!, $items: JSON!) {
          executeNode(workflowId: $wf, nodeId: $nodeId, items: $items) {
            __typename ... on NotFoundError { id }
          }
        }""",
        lambda w: {"wf": w.workflow["id"], "nodeId": "n1", "items": [{"x": 1}]},
        "NotFoundError",
    ),
    "publishWorkflow": (PUBLISH, lambda w: {"id": w.workflow["id"], "v": 1}, "NotFoundError"),
    "setWorkflowActive": (
        SET_ACTIVE,
        lambda w: {"id": w.workflow["id"], "active": False},
        "NotFoundError",
    ),
    "createUser": (
        f'mutation {{ createUser(name: "alice2", admin: true) {{ {TOKEN_RESULT} }} }}',
        lambda w: {},
        "ForbiddenError",
    ),
    "createApiToken": (
        f'mutation($u: ID) {{ createApiToken(name: "mine", userId: $u) {{ {TOKEN_RESULT} }} }}',
        lambda w: {"u": None},  # filled in with alice's user id by the test
        "ForbiddenError",
    ),
    "renameWorkspace": (
        RENAME_WORKSPACE,
        lambda w: {"id": w.workspace_id, "name": "pwned"},
        "NotFoundError",
    ),
    "deleteWorkspace": (DELETE_WORKSPACE, lambda w: {"id": w.workspace_id}, "NotFoundError"),
    "addWorkspaceMember": (
        ADD_MEMBER,
        lambda w: {"ws": w.workspace_id, "user": "u", "role": "owner"},  # "u": bob, below
        "NotFoundError",
    ),
    "changeMemberRole": (
        CHANGE_ROLE,
        lambda w: {"ws": w.workspace_id, "user": "alice", "role": "viewer"},
        "NotFoundError",
    ),
    "removeWorkspaceMember": (
        REMOVE_MEMBER,
        lambda w: {"ws": w.workspace_id, "user": "alice"},
        "NotFoundError",
    ),
    "revokeApiToken": (
        "mutation($id: ID!) { revokeApiToken(id: $id) { __typename ... on NotFoundError { id } } }",
        lambda w: {"id": w.token_id},
        "NotFoundError",
    ),
}

# Operations whose isolation is tested by a dedicated test, named here.
EXECUTIONS_TEST = "test_executions.py::test_other_users_cannot_see_run_or_cancel_executions"
CREDENTIALS_TEST = "test_credentials.py::test_nobody_sees_or_changes_anothers_credentials"
KINDS_TEST = "test_credentials.py::test_kinds_describe_their_fields_with_secrets_write_only"
DECLARATIVE_TEST = "test_declarative_types.py::test_nobody_changes_another_workspaces_types"
EXPORTS_TEST = "test_export_import.py::"
EXPORT_TEST = EXPORTS_TEST + "test_another_users_workflow_and_a_missing_version_are_not_found"
POLICY_READS_TEST = "test_node_type_policies.py::test_another_workspace_cannot_be_looked_at"
POLICIES_TEST = "test_node_type_policies.py::test_bad_changes_are_refused_and_record_nothing"
PREVIEWS_TEST = "test_expression_preview.py::test_bad_input_is_a_typed_result"
WORKSPACES_TEST = "test_workspaces.py::test_members_share_a_workspace_and_others_see_nothing_of_it"
SHARING_TESTS = "test_sharing.py::"
MUTATIONS_CHECKED_ELSEWHERE = {
    "createNodeType": DECLARATIVE_TEST,
    "updateNodeType": DECLARATIVE_TEST,
    "deleteNodeType": DECLARATIVE_TEST,
    "createWorkflow": "test_bob_creates_in_his_own_workspace",
    "executeWorkflow": EXECUTIONS_TEST,
    "cancelExecution": EXECUTIONS_TEST,
    "retryExecution": EXECUTIONS_TEST,
    "createCredential": CREDENTIALS_TEST,
    "updateCredential": CREDENTIALS_TEST,
    "deleteCredential": CREDENTIALS_TEST,
    "shareCredential": SHARING_TESTS
    + "test_sharing_to_a_workspace_you_do_not_belong_to_is_not_found",
    "unshareCredential": SHARING_TESTS + "test_only_owners_and_admins_share",
    "moveWorkflow": SHARING_TESTS + "test_moving_to_a_workspace_you_cannot_create_in",
    "setNodeTypeEnabled": POLICIES_TEST,
    "createWorkspace": WORKSPACES_TEST,
    "importWorkflow": EXPORTS_TEST + "test_importing_into_another_users_workspace_is_not_found",
}
QUERIES_CHECKED = {
    "viewer": "test_bob_reads_nothing_of_alices",
    "workflows": "test_bob_reads_nothing_of_alices",
    "workflow": "test_bob_reads_nothing_of_alices",
    "workflowVersion": "test_bob_reads_nothing_of_alices",
    "nodeTypes": "test_bob_reads_nothing_of_alices",
    "nodeType": "test_bob_reads_nothing_of_alices",
    # Admins only; a member gets none (tests/api/test_node_types.py).
    "nodeTypePackages": "test_a_member_sees_no_packages",
    "users": "test_bob_reads_nothing_of_alices",
    "apiTokens": "test_bob_reads_nothing_of_alices",
    "executions": EXECUTIONS_TEST,
    "execution": EXECUTIONS_TEST,
    "credentials": CREDENTIALS_TEST,
    "credentialKinds": KINDS_TEST,
    "nodeTypePolicyChanges": POLICY_READS_TEST,
    "exportWorkflow": EXPORT_TEST,
    "evaluateExpression": PREVIEWS_TEST,
    "evaluateParameters": PREVIEWS_TEST,
    "systemStatus": "test_bob_cannot_see_the_system_status",
    "workspaces": WORKSPACES_TEST,
    "workspace": WORKSPACES_TEST,
    "auditLog": "test_audit.py::test_outsiders_get_not_found_and_members_forbidden",
}


async def _root_fields(caller, kind):
    data = await caller.gql(f"{{ __schema {{ {kind} {{ fields {{ name }} }} }} }}")
    return {field["name"] for field in data["__schema"][kind]["fields"]}


async def test_every_operation_has_an_isolation_case(bob):
    mutations = await _root_fields(bob, "mutationType")
    assert mutations == set(MUTATION_CASES) | set(MUTATIONS_CHECKED_ELSEWHERE)
    assert await _root_fields(bob, "queryType") == set(QUERIES_CHECKED)


@pytest.mark.parametrize("mutation", MUTATION_CASES)
async def test_bob_cannot_change_alices_data(alice, bob, world, db_state, mutation):
    operation, variables, expected = MUTATION_CASES[mutation]
    values = variables(world)
    if "u" in values:
        values["u"] = alice.user_id
    members = {"u": bob.user_id, "alice": alice.user_id}
    if "user" in values:
        values["user"] = members[values["user"]]
    before = await db_state()
    result = only(await bob.gql(operation, values))
    assert result["__typename"] == expected, result
    if expected == "NotFoundError":
        assert result["id"] in (world.workflow["id"], world.token_id, world.workspace_id)
    assert await db_state() == before
    mine = (await alice.gql(GET, {"id": world.workflow["id"]}))["workflow"]
    assert mine == {key: world.workflow[key] for key in mine}
    assert (await alice.gql("{ viewer { name } }"))["viewer"]["name"] == "alice"


async def test_set_active_true_on_alices_workflow_is_not_found(alice, bob, world, db_state):
    only(await alice.gql(SET_ACTIVE, {"id": world.workflow["id"], "active": False}))
    before = await db_state()
    result = only(await bob.gql(SET_ACTIVE, {"id": world.workflow["id"], "active": True}))
    assert result["__typename"] == "NotFoundError"
    assert await db_state() == before


async def test_bob_creates_in_his_own_workspace(alice, bob, world, db_state):
    before = await db_state()
    created = only(await bob.gql(CREATE, {"input": workflow_input("Alice's secret flow")}))
    assert created["__typename"] == "Workflow"
    after = await db_state()
    for table, rows in before.items():
        assert set(rows) <= set(after[table]), table
    new_rows = [row for table in after for row in set(after[table]) - set(before[table])]
    assert new_rows and all(created["id"] in row for row in new_rows)
    alices = (await alice.gql(LIST, {}))["workflows"]
    assert [e["node"]["id"] for e in alices["edges"]] == [world.workflow["id"]]
    bobs = (await bob.gql(LIST, {}))["workflows"]
    assert [e["node"]["id"] for e in bobs["edges"]] == [created["id"]]
    assert (await alice.gql(GET, {"id": created["id"]}))["workflow"] is None


async def test_bob_reads_nothing_of_alices(alice, bob, world):
    wf = world.workflow["id"]
    assert (await bob.gql(GET, {"id": wf}))["workflow"] is None
    assert (await bob.gql(GET_WITH_VERSIONS, {"id": wf}))["workflow"] is None
    assert (await bob.gql(GET_VERSION, {"id": wf, "version": 1}))["workflowVersion"] is None
    for where in ({}, {"nameContains": "secret"}, {"tag": "private"}, {"active": True}):
        listing = (await bob.gql(LIST, {"filter": where}))["workflows"]
        assert listing["edges"] == [] and listing["totalCount"] == 0, where
    viewer = (await bob.gql("{ viewer { id name } }"))["viewer"]
    assert viewer == {"id": bob.user_id, "name": "bob"}
    assert (await bob.gql("{ users { name } }"))["users"] == []
    bobs_tokens = (await bob.gql("{ apiTokens { id } }"))["apiTokens"]
    assert world.token_id not in {t["id"] for t in bobs_tokens}
    assert len(bobs_tokens) == 1
    # The node type catalogue is the same for everyone and holds no user data.
    catalogue = '{ nodeTypes { name } nodeType(name: "noop") { name } }'
    assert await bob.gql(catalogue) == await alice.gql(catalogue)
    # Alice still sees her own.
    assert (await alice.gql(GET, {"id": wf}))["workflow"]["name"] == "Alice's secret flow"
    assert (await alice.gql(GET_VERSION, {"id": wf, "version": 1}))["workflowVersion"]


async def test_bobs_cursor_over_alices_rows_reveals_nothing(alice, bob, world):
    alices_page = (await alice.gql(LIST, {"first": 1}))["workflows"]
    cursor = alices_page["edges"][0]["cursor"]
    await create_workflow(bob, "bob's")
    page = (await bob.gql(LIST, {"after": cursor}))["workflows"]
    assert [e["node"]["name"] for e in page["edges"]] in ([], ["bob's"])


async def test_users_in_the_same_request_see_only_their_own(alice, bob, world):
    await create_workflow(bob, "bob 1")
    await create_workflow(bob, "bob 2")
    query = """{ workflows { edges { node { name createdBy { name } workspace { name } } } } }"""
    bobs = (await bob.gql(query))["workflows"]["edges"]
    assert {e["node"]["createdBy"]["name"] for e in bobs} == {"bob"}
    assert {e["node"]["workspace"]["name"] for e in bobs} == {"bob's workspace"}
    alices = (await alice.gql(query))["workflows"]["edges"]
    assert [e["node"]["name"] for e in alices] == ["Alice's secret flow"]


async def test_bob_cannot_see_the_system_status(bob, world, db_state):
    before = await db_state()
    result = only(
        await bob.gql("{ systemStatus { __typename ... on ForbiddenError { message } } }")
    )
    assert result == {
        "__typename": "ForbiddenError",
        "message": "only an admin may see the system status",
    }
    assert await db_state() == before
