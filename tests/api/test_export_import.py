"""Export and import of workflows as documents: round trips, credentials by name (never
secrets), what becomes a node issue, and every bad document refused with nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.validation import GraphLimits
from storage.workflow_documents import import_document
from tests.conftest import Caller
from tests.factories import (
    UPDATE,
    UPDATE_NODE,
    chain,
    create_workflow,
    edge,
    node,
    only,
    publish_workflow,
    workflow_input,
)

SECRET = "s3cr3t-token-that-must-never-be-exported"

EXPORT = """
query($id: ID!, $version: Int) {
  exportWorkflow(id: $id, version: $version) {
    __typename
    ... on WorkflowDocument { workflowId version document }
    ... on NotFoundError { message id }
  }
}
"""
IMPORT = """
mutation($document: JSON!, $workspaceId: ID) {
  importWorkflow(document: $document, workspaceId: $workspaceId) {
    __typename
    ... on Workflow {
      id name description tags version publishedVersion settings runnable
      nodes { id name type typeVersion credentials issues { code message nodeId field severity } }
      edges { source target }
    }
    ... on ValidationError { message problems { code message nodeId field severity } }
    ... on NotFoundError { message id }
  }
}
"""
CREATE_CREDENTIAL = """
mutation($input: CredentialInput!) {
  createCredential(input: $input) { __typename ... on Credential { id name kind } }
}
"""
PIN = """
mutation($wf: ID!, $node: ID!, $items: JSON!, $v: Int!) {
  pinNodeData(workflowId: $wf, nodeId: $node, items: $items, expectedVersion: $v) {
    __typename
  }
}
"""
EXECUTE = """
mutation($id: ID!) {
  executeWorkflow(id: $id) { __typename ... on ValidationError { problems { code nodeId } } }
}
"""


async def credential(caller: Caller, name: str = "GitHub", kind: str = "bearer_token") -> str:
    data = {"token": SECRET} if kind == "bearer_token" else {"username": "u", "password": SECRET}
    created = only(
        await caller.gql(CREATE_CREDENTIAL, {"input": {"name": name, "kind": kind, "data": data}})
    )
    assert created["__typename"] == "Credential", created
    return str(created["id"])


async def export(caller: Caller, workflow_id: str, version: int | None = None) -> Any:
    return only(await caller.gql(EXPORT, {"id": workflow_id, "version": version}))


async def import_(caller: Caller, document: Any, workspace_id: str | None = None) -> Any:
    return only(await caller.gql(IMPORT, {"document": document, "workspaceId": workspace_id}))


def document(**members: Any) -> dict[str, Any]:
    """A small valid document, with `members` replaced."""
    base: dict[str, Any] = {
        "formatVersion": 1,
        "name": "Imported",
        "nodes": [
            {"id": "t", "name": "Start", "type": "manual_trigger"},
            {"id": "a", "name": "Step", "type": "noop"},
        ],
        "edges": [{"source": "t", "target": "a"}],
    }
    base.update(members)
    return base


async def _rich_workflow(caller: Caller) -> dict[str, Any]:
    credential_id = await credential(caller)
    nodes = [
        node("t", "Start", "manual_trigger", position={"x": 10, "y": 20}),
        node(
            "h",
            "Fetch",
            "http_request",
            parameters={"url": "https://example.com/{{ $json.id }}", "method": "GET"},
            credentials={"bearer_token": credential_id},
            retry={"maxAttempts": 3, "backoffSeconds": 2},
            timeoutSeconds=30,
            onError="CONTINUE",
            notes="calls the API",
        ),
        node("s", "Keep", "limit", parameters={"maxItems": 5}, disabled=True),
    ]
    return await create_workflow(
        caller,
        "Sync issues",
        description="Copies issues",
        tags=["sync", "github"],
        settings={"timezone": "Europe/Berlin"},
        nodes=nodes,
        edges=[edge("t", "h"), edge("h", "s")],
    )


async def test_a_round_trip_gives_the_same_document_and_only_new_ids(alice):
    workflow = await _rich_workflow(alice)
    exported = await export(alice, workflow["id"])
    assert exported["__typename"] == "WorkflowDocument"
    assert (exported["workflowId"], exported["version"]) == (workflow["id"], 1)
    first = exported["document"]
    assert first["formatVersion"] == 1
    assert list(first) == [
        "formatVersion",
        "name",
        "description",
        "tags",
        "settings",
        "nodes",
        "edges",
        "pinData",
    ]
    assert first["pinData"] == {}
    imported = await import_(alice, first)
    assert imported["__typename"] == "Workflow", imported
    assert imported["id"] != workflow["id"]
    assert (imported["version"], imported["publishedVersion"]) == (1, None)
    assert [n["id"] for n in imported["nodes"]] == ["t", "h", "s"]
    assert all(n["issues"] == [] for n in imported["nodes"])
    second = (await export(alice, imported["id"]))["document"]
    assert json.dumps(second) == json.dumps(first)


async def test_credentials_are_named_by_kind_and_name_and_secrets_never_exported(alice):
    workflow = await _rich_workflow(alice)
    credential_id = workflow["nodes"][1]["credentials"]["bearer_token"]
    text = json.dumps((await export(alice, workflow["id"]))["document"])
    assert SECRET not in text
    assert credential_id not in text
    fetch = json.loads(text)["nodes"][1]
    assert fetch["credentials"] == {"bearer_token": {"name": "GitHub"}}
    assert fetch["typeVersion"] == workflow["nodes"][1]["typeVersion"]


async def test_import_links_credentials_by_name_in_the_target_workspace(alice, bob):
    exported = (await export(alice, (await _rich_workflow(alice))["id"]))["document"]
    bobs = await credential(bob, "GitHub")
    viewer = await bob.gql("{ viewer { personalWorkspace { id } } }")
    imported = await import_(bob, exported, viewer["viewer"]["personalWorkspace"]["id"])
    assert imported["__typename"] == "Workflow", imported
    assert imported["nodes"][1]["credentials"] == {"bearer_token": bobs}
    assert imported["runnable"] is True


async def test_a_credential_of_another_workspace_is_not_found_by_its_name(alice, bob):
    workflow = await _rich_workflow(alice)
    alices = workflow["nodes"][1]["credentials"]["bearer_token"]
    imported = await import_(bob, (await export(alice, workflow["id"]))["document"])
    assert imported["__typename"] == "Workflow", imported
    fetch = imported["nodes"][1]
    assert fetch["credentials"] == {}
    assert alices not in json.dumps(imported)
    (issue,) = fetch["issues"]
    assert (issue["code"], issue["nodeId"], issue["field"], issue["severity"]) == (
        "UNKNOWN_CREDENTIAL",
        "h",
        "credentials.bearer_token",
        "PARAMETER",
    )
    assert "'GitHub'" in issue["message"]
    assert imported["runnable"] is False


async def test_a_credential_of_another_kind_is_a_node_issue(alice, bob):
    exported = (await export(alice, (await _rich_workflow(alice))["id"]))["document"]
    await credential(bob, "GitHub", kind="basic_auth")
    imported = await import_(bob, exported)
    assert [i["code"] for i in imported["nodes"][1]["issues"]] == ["CREDENTIAL_KIND_MISMATCH"]
    assert imported["nodes"][1]["credentials"] == {}


async def test_unknown_types_and_versions_are_node_issues_of_a_draft_that_cannot_run(alice):
    nodes = [
        {"id": "t", "name": "Start", "type": "manual_trigger"},
        {"id": "p", "name": "Plugin", "type": "acme.crm", "typeVersion": 2},
        {"id": "s", "name": "Later", "type": "limit", "typeVersion": 99},
        {"id": "a", "name": "Step", "type": "noop"},
    ]
    edges = [{"source": "t", "target": "p"}, {"source": "p", "target": "s"}]
    imported = await import_(alice, document(nodes=nodes, edges=edges))
    assert imported["__typename"] == "Workflow", imported
    issues = {
        n["id"]: [(i["code"], i["field"], i["severity"]) for i in n["issues"]]
        for n in imported["nodes"]
    }
    assert issues == {
        "t": [],
        "p": [("UNKNOWN_NODE_TYPE", "type", "PARAMETER")],
        "s": [("UNKNOWN_TYPE_VERSION", "typeVersion", "PARAMETER")],
        "a": [],
    }
    assert imported["nodes"][1]["typeVersion"] == 2
    assert imported["runnable"] is False
    refused = only(await alice.gql(EXECUTE, {"id": imported["id"]}))
    assert refused["__typename"] == "ValidationError"
    assert {"UNKNOWN_NODE_TYPE", "UNKNOWN_TYPE_VERSION"} <= {p["code"] for p in refused["problems"]}
    # The rest of the draft can still be edited; the nodes keep their issues.
    renamed = only(
        await alice.gql(
            UPDATE_NODE,
            {"wf": imported["id"], "nodeId": "a", "node": node("a", "Renamed"), "v": 1},
        )
    )
    assert renamed["__typename"] == "Workflow", renamed
    assert [i["code"] for i in renamed["nodes"][1]["issues"]] == ["UNKNOWN_NODE_TYPE"]
    # A node changed to a type that is not installed is still refused.
    changed = only(
        await alice.gql(
            UPDATE_NODE,
            {"wf": imported["id"], "nodeId": "a", "node": node("a", "A", "acme.other"), "v": 2},
        )
    )
    assert changed["__typename"] == "ValidationError"
    assert [p["code"] for p in changed["problems"]] == ["UNKNOWN_NODE_TYPE"]


async def test_a_published_version_is_exported_by_number(alice):
    workflow = await create_workflow(alice)
    await publish_workflow(alice, workflow)
    renamed = workflow_input(
        nodes=[node("n0", "Start", "manual_trigger"), node("n1", "Later")], edges=[edge("n0", "n1")]
    )
    updated = only(await alice.gql(UPDATE, {"id": workflow["id"], "input": renamed, "v": 1}))
    assert updated["version"] == 2
    old = await export(alice, workflow["id"], 1)
    assert old["version"] == 1
    assert [n["name"] for n in old["document"]["nodes"]] == ["Start", "Step 1", "Step 2"]
    draft = await export(alice, workflow["id"])
    assert draft["version"] == 2
    assert [n["name"] for n in draft["document"]["nodes"]] == ["Start", "Later"]


async def test_another_users_workflow_and_a_missing_version_are_not_found(alice, bob):
    workflow = await create_workflow(alice)
    theirs = await export(bob, workflow["id"])
    assert theirs["__typename"] == "NotFoundError"
    assert theirs["id"] == workflow["id"]
    missing = await export(alice, workflow["id"], 7)
    assert missing["__typename"] == "NotFoundError"
    assert "version 7" in missing["message"]


async def test_importing_into_another_users_workspace_is_not_found(alice, bob, db_state):
    viewer = await bob.gql("{ viewer { personalWorkspace { id } } }")
    bobs_workspace = viewer["viewer"]["personalWorkspace"]["id"]
    before = await db_state()
    refused = await import_(alice, document(), bobs_workspace)
    assert (refused["__typename"], refused["id"]) == ("NotFoundError", bobs_workspace)
    assert await db_state() == before


async def _refused(caller: Caller, db_state: Any, bad: Any) -> list[dict[str, Any]]:
    before = await db_state()
    result = await import_(caller, bad)
    assert result["__typename"] == "ValidationError", result
    assert await db_state() == before
    return list(result["problems"])


async def test_a_newer_format_version_is_refused_naming_both(alice, db_state):
    (problem,) = await _refused(alice, db_state, document(formatVersion=2, nodes="later"))
    assert (problem["code"], problem["field"]) == ("UNSUPPORTED_FORMAT_VERSION", "formatVersion")
    assert "version 2" in problem["message"] and "version 1" in problem["message"]


async def test_a_document_of_2001_nodes_is_refused(alice, db_state):
    graph = chain(2001)
    problems = await _refused(alice, db_state, document(**graph))
    assert [(p["code"], p["field"]) for p in problems] == [("TOO_MANY_NODES", "nodes")]


async def test_a_cycle_is_refused_naming_its_nodes(alice, db_state):
    nodes = [
        {"id": "t", "name": "Start", "type": "manual_trigger"},
        {"id": "a", "name": "Alpha", "type": "noop"},
        {"id": "b", "name": "Beta", "type": "noop"},
    ]
    edges = [
        {"source": "t", "target": "a"},
        {"source": "a", "target": "b"},
        {"source": "b", "target": "a"},
    ]
    (problem,) = await _refused(alice, db_state, document(nodes=nodes, edges=edges))
    assert problem["code"] == "CYCLE"
    assert "Alpha" in problem["message"] and "Beta" in problem["message"]


async def test_every_problem_is_returned_at_once(alice, db_state):
    nodes = [
        {"id": "t", "name": "Start", "type": 5},
        {"id": "t", "name": "Again", "type": "noop"},
        "not a node",
    ]
    problems = await _refused(
        alice,
        db_state,
        document(name="", tags="x", nodes=nodes, edges=[{"source": "t", "target": "ghost"}]),
    )
    found = {(p["code"], p["nodeId"], p["field"]) for p in problems}
    assert found >= {
        ("INVALID_DOCUMENT", None, "name"),
        ("INVALID_DOCUMENT", None, "tags"),
        ("INVALID_DOCUMENT", "t", "type"),
        ("INVALID_DOCUMENT", None, "nodes[2]"),
        ("DUPLICATE_NODE_ID", "t", "id"),
        ("EDGE_TARGET_MISSING", None, "edges[0].target"),
    }, found


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ([document()], "", "must hold a JSON object"),
        ("a workflow", "", "must hold a JSON object"),
        ({k: v for k, v in document().items() if k != "formatVersion"}, "formatVersion", "null"),
        (document(formatVersion="1"), "formatVersion", "whole number"),
        (document(formatVersion=0), "formatVersion", "whole number"),
        ({k: v for k, v in document().items() if k != "name"}, "name", "non-empty text"),
        ({k: v for k, v in document().items() if k != "nodes"}, "nodes", "must be a list"),
        (document(nodes={"t": {}}), "nodes", "must be a list"),
        (document(edges="t->a"), "edges", "must be a list"),
        (document(settings={"timezone": "Mars/Olympus"}), "settings.timezone", "time zone"),
        (document(description=3), "description", "must be text"),
        (document(extra=True), "extra", "unknown field"),
        (document(pinData=[]), "pinData", "JSON object"),
    ],
    ids=[
        "list",
        "text",
        "no formatVersion",
        "formatVersion text",
        "formatVersion 0",
        "no name",
        "no nodes",
        "nodes an object",
        "edges text",
        "bad settings",
        "description a number",
        "unknown member",
        "pinData a list",
    ],
)
async def test_a_malformed_document_names_the_field(alice, db_state, bad, field, words):
    problems = await _refused(alice, db_state, bad)
    assert field in [p["field"] for p in problems], problems
    problem = next(p for p in problems if p["field"] == field)
    assert words in problem["message"], problem


@pytest.mark.parametrize(
    ("bad_node", "field"),
    [
        ({"id": "a", "name": "A", "type": "noop", "typeVersion": "1"}, "typeVersion"),
        ({"id": "a", "name": "A", "type": "noop", "parameters": [1]}, "parameters"),
        ({"id": "a", "name": "A", "type": "noop", "position": {"x": "left"}}, "position"),
        ({"id": "a", "name": "A", "type": "noop", "onError": "IGNORE"}, "onError"),
        (
            {"id": "a", "name": "A", "type": "noop", "retry": {"maxAttempts": "3"}},
            "retry.maxAttempts",
        ),
        (
            {"id": "a", "name": "A", "type": "noop", "credentials": {"bearer_token": "id-1"}},
            "credentials",
        ),
        ({"id": "a", "name": 7, "type": "noop"}, "name"),
    ],
    ids=["typeVersion", "parameters", "position", "onError", "retry", "credential by id", "name"],
)
async def test_a_malformed_node_names_the_node_and_field(alice, db_state, bad_node, field):
    nodes = [{"id": "t", "name": "Start", "type": "manual_trigger"}, bad_node]
    problems = await _refused(alice, db_state, document(nodes=nodes))
    assert ("INVALID_DOCUMENT", "a", field) in {
        (p["code"], p["nodeId"], p["field"]) for p in problems
    }, problems


async def test_pins_are_exported_and_imported_and_a_round_trip_keeps_them(alice):
    workflow = await _rich_workflow(alice)
    pinned = [{"issue": 1, "title": "first"}, {"issue": 2, "title": "second"}]
    for node_id, items, version in (("s", [{"kept": True}], 1), ("h", pinned, 2)):
        result = await alice.gql(
            PIN, {"wf": workflow["id"], "node": node_id, "items": items, "v": version}
        )
        assert result["pinNodeData"]["__typename"] == "Workflow", result
    first = (await export(alice, workflow["id"]))["document"]
    # In the order of the nodes, whatever the order they were pinned in.
    assert list(first["pinData"].items()) == [("h", pinned), ("s", [{"kept": True}])]
    imported = await import_(alice, first)
    assert imported["__typename"] == "Workflow", imported
    second = (await export(alice, imported["id"]))["document"]
    assert json.dumps(second) == json.dumps(first)
    # The imported workflow's manual executions use them.
    shown = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { nodes { id pinnedData } } }", {"id": imported["id"]}
    )
    assert {n["id"]: n["pinnedData"] for n in shown["workflow"]["nodes"]} == {
        "t": None,
        "h": pinned,
        "s": [{"kept": True}],
    }


async def test_pins_of_a_document_over_the_size_limit_are_refused(
    alice, database, registry, db_state
):
    before = await db_state()
    viewer = await alice.gql("{ viewer { personalWorkspace { id } } }")
    refused = await import_document(
        database,
        registry,
        GraphLimits(max_pinned_bytes=100),
        document(pinData={"a": [{"x": "y" * 100}]}),
        workspace_id=viewer["viewer"]["personalWorkspace"]["id"],
        created_by=None,
    )
    assert isinstance(refused, list)
    assert [(p.code, p.field) for p in refused] == [("PINS_TOO_LARGE", "pinData")]
    assert await db_state() == before


@pytest.mark.parametrize(
    ("pins", "code", "field"),
    [
        ({"ghost": [{"x": 1}]}, "INVALID_DOCUMENT", "pinData.ghost"),
        ({"a": {"x": 1}}, "INVALID_ITEMS", "pinData.a"),
        ({"a": [{"x": 1}, "text"]}, "INVALID_ITEMS", "pinData.a[1]"),
    ],
    ids=["unknown node", "not a list", "not an object"],
)
async def test_bad_pins_of_a_document_are_refused(alice, db_state, pins, code, field):
    problems = await _refused(alice, db_state, document(pinData=pins))
    assert [(p["code"], p["field"]) for p in problems] == [(code, field)], problems


async def test_a_sub_workflow_that_is_not_in_the_workspace_is_refused_with_the_rest(
    alice, db_state
):
    nodes = [
        {"id": "t", "name": "Start", "type": "manual_trigger"},
        {
            "id": "c",
            "name": "Call",
            "type": "execute_workflow",
            "parameters": {"workflowId": "w-1"},
        },
        {"id": "c", "name": "Again", "type": "noop"},
    ]
    problems = await _refused(alice, db_state, document(nodes=nodes, edges=[]))
    assert {(p["code"], p["field"]) for p in problems} == {
        ("DUPLICATE_NODE_ID", "id"),
        ("UNKNOWN_WORKFLOW", "parameters.workflowId"),
    }


@pytest.mark.parametrize(
    "credentials",
    [{"bearer_token": {"name": "Git\x00Hub"}}, {"bearer\x00token": {"name": "GitHub"}}],
    ids=["NUL in the name", "NUL in the kind"],
)
async def test_a_credential_reference_that_cannot_be_stored_is_refused(
    alice, db_state, credentials
):
    nodes = [{"id": "a", "name": "A", "type": "noop", "credentials": credentials}]
    problems = await _refused(alice, db_state, document(nodes=nodes, edges=[]))
    assert [(p["code"], p["nodeId"]) for p in problems] == [("INVALID_CHARACTER", "a")]
