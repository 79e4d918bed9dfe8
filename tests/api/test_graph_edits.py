"""Single-step canvas edits: each validates the whole graph and bumps the version."""

from __future__ import annotations

import pytest

from tests.factories import (
    ADD_EDGE,
    ADD_NODE,
    GET,
    REMOVE_EDGE,
    REMOVE_NODE,
    UPDATE_NODE,
    create_workflow,
    edge,
    node,
    only,
    problem_codes,
)

MISSING_WORKFLOW = "00000000-0000-4000-8000-000000000000"


async def _graph(alice):
    """Start -> Step 1 -> Step 2 (ids n0, n1, n2), at version 1."""
    return await create_workflow(alice)


async def test_add_node_appends_it_and_bumps_the_version(alice):
    workflow = await _graph(alice)
    new = node("n3", "Step 3", "noop", position={"x": 10, "y": 20})
    result = only(await alice.gql(ADD_NODE, {"wf": workflow["id"], "node": new, "v": 1}))
    assert result["__typename"] == "Workflow"
    assert result["version"] == 2
    assert [n["id"] for n in result["nodes"]] == ["n0", "n1", "n2", "n3"]
    assert result["nodes"][3]["position"] == {"x": 10.0, "y": 20.0}
    assert result["edges"] == workflow["edges"]


async def test_update_node_replaces_it_in_place(alice):
    workflow = await _graph(alice)
    changed = node("n1", "Renamed", "limit", parameters={"maxItems": 3}, notes="n")
    result = only(
        await alice.gql(
            UPDATE_NODE, {"wf": workflow["id"], "nodeId": "n1", "node": changed, "v": 1}
        )
    )
    assert result["__typename"] == "Workflow"
    assert result["version"] == 2
    assert [n["id"] for n in result["nodes"]] == ["n0", "n1", "n2"]
    updated = result["nodes"][1]
    assert (updated["name"], updated["type"], updated["parameters"], updated["notes"]) == (
        "Renamed",
        "limit",
        {"maxItems": 3},
        "n",
    )
    assert updated["issues"] == []
    assert result["edges"] == workflow["edges"]


async def test_remove_node_removes_its_edges(alice):
    workflow = await _graph(alice)
    result = only(await alice.gql(REMOVE_NODE, {"wf": workflow["id"], "nodeId": "n1", "v": 1}))
    assert result["__typename"] == "Workflow"
    assert result["version"] == 2
    assert [n["id"] for n in result["nodes"]] == ["n0", "n2"]
    assert result["edges"] == []


async def test_remove_node_keeps_unrelated_edges(alice):
    workflow = await create_workflow(
        alice,
        nodes=[node("t", "T", "manual_trigger"), node("a"), node("b"), node("c")],
        edges=[edge("t", "a"), edge("a", "b"), edge("t", "c")],
    )
    result = only(await alice.gql(REMOVE_NODE, {"wf": workflow["id"], "nodeId": "a", "v": 1}))
    assert [(e["source"], e["target"]) for e in result["edges"]] == [("t", "c")]


async def test_add_edge_connects_two_nodes(alice):
    workflow = await create_workflow(
        alice, nodes=[node("t", "T", "manual_trigger"), node("a")], edges=[]
    )
    result = only(await alice.gql(ADD_EDGE, {"wf": workflow["id"], "edge": edge("t", "a"), "v": 1}))
    assert result["__typename"] == "Workflow"
    assert result["version"] == 2
    assert result["edges"] == [
        {
            "id": "t:main->a:main",
            "source": "t",
            "sourceOutput": "main",
            "target": "a",
            "targetInput": "main",
        }
    ]


async def test_add_edge_between_named_ports(alice):
    workflow = await create_workflow(
        alice,
        nodes=[
            node("t", "T", "manual_trigger"),
            node("i", "If", "if", parameters={"conditions": []}),
            node("m", "Merge", "merge"),
        ],
        edges=[edge("t", "i")],
    )
    wf, version = workflow["id"], 1
    for source_output, target_input in (("true", "input1"), ("false", "input2")):
        port_edge = edge("i", "m", sourceOutput=source_output, targetInput=target_input)
        result = only(await alice.gql(ADD_EDGE, {"wf": wf, "edge": port_edge, "v": version}))
        assert result["__typename"] == "Workflow", result
        version = result["version"]
    assert version == 3
    ids = [e["id"] for e in result["edges"]]
    assert ids == ["t:main->i:main", "i:true->m:input1", "i:false->m:input2"]


async def test_remove_edge_removes_only_that_edge(alice):
    workflow = await _graph(alice)
    result = only(
        await alice.gql(REMOVE_EDGE, {"wf": workflow["id"], "edge": edge("n0", "n1"), "v": 1})
    )
    assert result["__typename"] == "Workflow"
    assert result["version"] == 2
    assert [(e["source"], e["target"]) for e in result["edges"]] == [("n1", "n2")]
    assert len(result["nodes"]) == 3


async def test_edits_chain_versions(alice):
    workflow = await _graph(alice)
    wf = workflow["id"]
    steps = [
        (ADD_NODE, {"node": node("x", "X")}),
        (ADD_EDGE, {"edge": edge("n2", "x")}),
        (UPDATE_NODE, {"nodeId": "x", "node": node("x", "X2")}),
        (REMOVE_EDGE, {"edge": edge("n2", "x")}),
        (REMOVE_NODE, {"nodeId": "x"}),
    ]
    for expected, (query, variables) in enumerate(steps, start=2):
        result = only(await alice.gql(query, {"wf": wf, "v": expected - 1, **variables}))
        assert result["__typename"] == "Workflow", result
        assert result["version"] == expected
    final = (await alice.gql(GET, {"id": wf}))["workflow"]
    assert final["version"] == 6
    assert final["nodes"] == workflow["nodes"]
    assert final["edges"] == workflow["edges"]


# Every edit refuses what validation refuses, and then stores nothing.

REFUSED_EDITS = {
    "add duplicate node id": (ADD_NODE, {"node": node("n1", "Other")}, "DUPLICATE_NODE_ID"),
    "add duplicate node name": (ADD_NODE, {"node": node("z", "Step 1")}, "DUPLICATE_NODE_NAME"),
    "add unknown type": (ADD_NODE, {"node": node("z", "Z", "no_such")}, "UNKNOWN_NODE_TYPE"),
    "add empty name": (ADD_NODE, {"node": node("z", "  ")}, "EMPTY_NAME"),
    "add NUL in name": (ADD_NODE, {"node": node("z", "a\x00b")}, "INVALID_CHARACTER"),
    "add bad parameters": (
        ADD_NODE,
        {"node": node("z", "Z", parameters=[1, 2])},
        "INVALID_PARAMETERS",
    ),
    "update missing node": (UPDATE_NODE, {"nodeId": "zz", "node": node("zz")}, "NODE_NOT_FOUND"),
    "update changes id": (UPDATE_NODE, {"nodeId": "n1", "node": node("n9")}, "NODE_ID_CHANGED"),
    "update to duplicate name": (
        UPDATE_NODE,
        {"nodeId": "n1", "node": node("n1", "Step 2")},
        "DUPLICATE_NODE_NAME",
    ),
    "update to unknown type": (
        UPDATE_NODE,
        {"nodeId": "n1", "node": node("n1", "Step 1", "nope")},
        "UNKNOWN_NODE_TYPE",
    ),
    "remove missing node": (REMOVE_NODE, {"nodeId": "zz"}, "NODE_NOT_FOUND"),
    "add dangling edge": (ADD_EDGE, {"edge": edge("n2", "ghost")}, "EDGE_TARGET_MISSING"),
    "add edge from nowhere": (ADD_EDGE, {"edge": edge("ghost", "n2")}, "EDGE_SOURCE_MISSING"),
    "add self loop": (ADD_EDGE, {"edge": edge("n1", "n1")}, "SELF_LOOP"),
    "add cycle": (ADD_EDGE, {"edge": edge("n2", "n1")}, "CYCLE"),
    "add duplicate edge": (ADD_EDGE, {"edge": edge("n0", "n1")}, "DUPLICATE_EDGE"),
    "add edge to unknown port": (
        ADD_EDGE,
        {"edge": edge("n0", "n2", targetInput="nope")},
        "UNKNOWN_INPUT_PORT",
    ),
    "add edge from unknown port": (
        ADD_EDGE,
        {"edge": edge("n0", "n2", sourceOutput="nope")},
        "UNKNOWN_OUTPUT_PORT",
    ),
    "remove missing edge": (REMOVE_EDGE, {"edge": edge("n0", "n2")}, "EDGE_NOT_FOUND"),
    "remove edge with other ports": (
        REMOVE_EDGE,
        {"edge": edge("n0", "n1", sourceOutput="other")},
        "EDGE_NOT_FOUND",
    ),
}


@pytest.mark.parametrize("case", REFUSED_EDITS, ids=list(REFUSED_EDITS))
async def test_refused_edit_is_a_validation_error_and_stores_nothing(alice, db_state, case):
    query, variables, code = REFUSED_EDITS[case]
    workflow = await _graph(alice)
    before = await db_state()
    result = only(await alice.gql(query, {"wf": workflow["id"], "v": 1, **variables}))
    assert result["__typename"] == "ValidationError", result
    assert code in problem_codes(result)
    assert result["message"]
    assert await db_state() == before


async def test_edit_errors_name_the_node_and_field(alice):
    workflow = await _graph(alice)
    wf = workflow["id"]
    changed_id = only(
        await alice.gql(UPDATE_NODE, {"wf": wf, "nodeId": "n1", "node": node("n9"), "v": 1})
    )
    (problem,) = changed_id["problems"]
    assert (problem["code"], problem["nodeId"], problem["field"]) == (
        "NODE_ID_CHANGED",
        "n1",
        "node.id",
    )
    assert problem["severity"] == "STRUCTURAL"
    missing = only(await alice.gql(REMOVE_NODE, {"wf": wf, "nodeId": "zz", "v": 1}))
    (problem,) = missing["problems"]
    assert (problem["code"], problem["nodeId"], problem["field"]) == (
        "NODE_NOT_FOUND",
        "zz",
        "nodeId",
    )
    no_edge = only(await alice.gql(REMOVE_EDGE, {"wf": wf, "edge": edge("n0", "n2"), "v": 1}))
    (problem,) = no_edge["problems"]
    assert (problem["code"], problem["field"]) == ("EDGE_NOT_FOUND", "edge")
    cycle = only(await alice.gql(ADD_EDGE, {"wf": wf, "edge": edge("n2", "n1"), "v": 1}))
    (problem,) = cycle["problems"]
    assert problem["code"] == "CYCLE"
    assert "Step 1" in problem["message"] and "Step 2" in problem["message"]


EDITS = {
    "addNode": (ADD_NODE, {"node": node("z", "Z")}),
    "updateNode": (UPDATE_NODE, {"nodeId": "n1", "node": node("n1", "Renamed")}),
    "removeNode": (REMOVE_NODE, {"nodeId": "n2"}),
    "addEdge": (ADD_EDGE, {"edge": edge("n0", "n2")}),
    "removeEdge": (REMOVE_EDGE, {"edge": edge("n1", "n2")}),
}


@pytest.mark.parametrize("mutation", EDITS)
async def test_edit_with_stale_version_is_a_conflict(alice, db_state, mutation):
    query, variables = EDITS[mutation]
    workflow = await _graph(alice)
    first = only(await alice.gql(query, {"wf": workflow["id"], "v": 1, **variables}))
    assert first["__typename"] == "Workflow"
    before = await db_state()
    stale = only(await alice.gql(query, {"wf": workflow["id"], "v": 1, **variables}))
    assert stale["__typename"] == "VersionConflictError"
    assert (stale["expectedVersion"], stale["currentVersion"]) == (1, 2)
    assert await db_state() == before


@pytest.mark.parametrize("mutation", EDITS)
async def test_edit_of_a_missing_workflow_is_not_found(alice, db_state, mutation):
    query, variables = EDITS[mutation]
    before = await db_state()
    result = only(await alice.gql(query, {"wf": MISSING_WORKFLOW, "v": 1, **variables}))
    assert result["__typename"] == "NotFoundError"
    assert result["id"] == MISSING_WORKFLOW
    assert await db_state() == before


# Parameter problems are saved with the node, as issues; they never refuse an edit.


async def test_parameter_problems_are_saved_as_node_issues(alice):
    workflow = await _graph(alice)
    limit = node("lim", "Limit", "limit")
    added = only(await alice.gql(ADD_NODE, {"wf": workflow["id"], "node": limit, "v": 1}))
    assert added["__typename"] == "Workflow"
    (issue,) = added["nodes"][3]["issues"]
    assert issue["code"] == "MISSING_PARAMETER"
    assert issue["severity"] == "PARAMETER"
    assert issue["nodeId"] == "lim"
    assert issue["field"] == "parameters.maxItems"
    got = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { runnable issues { code nodeId } } }",
        {"id": workflow["id"]},
    )
    assert got["workflow"] == {
        "runnable": False,
        "issues": [{"code": "MISSING_PARAMETER", "nodeId": "lim"}],
    }
    invalid = node("lim", "Limit", "limit", parameters={"maxItems": 0})
    updated = only(
        await alice.gql(
            UPDATE_NODE, {"wf": workflow["id"], "nodeId": "lim", "node": invalid, "v": 2}
        )
    )
    assert [(i["code"], i["severity"]) for i in updated["nodes"][3]["issues"]] == [
        ("INVALID_PARAMETER", "PARAMETER")
    ]
    fixed = node("lim", "Limit", "limit", parameters={"maxItems": 5})
    repaired = only(
        await alice.gql(UPDATE_NODE, {"wf": workflow["id"], "nodeId": "lim", "node": fixed, "v": 3})
    )
    assert repaired["version"] == 4
    assert repaired["nodes"][3]["issues"] == []
    got = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { runnable issues { code } } }",
        {"id": workflow["id"]},
    )
    assert got["workflow"] == {"runnable": True, "issues": []}


async def test_removing_a_node_drops_its_issues(alice):
    workflow = await create_workflow(
        alice, nodes=[node("t", "T", "manual_trigger"), node("lim", "L", "limit")], edges=[]
    )
    assert workflow["nodes"][1]["issues"]
    result = only(await alice.gql(REMOVE_NODE, {"wf": workflow["id"], "nodeId": "lim", "v": 1}))
    got = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { runnable issues { code } } }",
        {"id": workflow["id"]},
    )
    assert result["version"] == 2
    assert got["workflow"] == {"runnable": True, "issues": []}
