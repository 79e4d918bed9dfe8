"""A new version of a node type never changes the nodes saved before it (docs/node-types.md)."""

from __future__ import annotations

import dataclasses

import pytest

from engine.node_types import NodeTypeRegistry, load_registry
from tests.factories import UPDATE, create_workflow, edge, node, only

ADD = """
mutation($id: ID!, $node: NodeInput!, $v: Int!) {
  addNode(workflowId: $id, node: $node, expectedVersion: $v) {
    __typename ... on Workflow { version nodes { id typeVersion } }
  }
}
"""


@pytest.fixture
def registry() -> NodeTypeRegistry:
    """A registry of this test's own, which it may add a version to."""
    return load_registry()


def _versions(workflow: dict) -> dict[str, int | None]:
    return {n["id"]: n["typeVersion"] for n in workflow["nodes"]}


async def test_saved_nodes_keep_their_version_when_a_newer_one_is_installed(alice, registry):
    nodes = [node("t", "Start", "manual_trigger"), node("g", "Greet", "acme.greet")]
    created = await create_workflow(alice, nodes=nodes, edges=[edge("t", "g")])
    assert _versions(created) == {"t": 1, "g": 1}
    greet = registry.get("acme.greet")
    assert greet is not None
    registry.register(dataclasses.replace(greet, version=2))
    # The editor sends the nodes back without their versions: they keep theirs.
    sent_back = {"name": "My workflow", "nodes": nodes, "edges": [edge("t", "g")]}
    updated = only(
        await alice.gql(UPDATE, {"id": created["id"], "input": sent_back, "v": created["version"]})
    )
    assert updated["__typename"] == "Workflow", updated
    assert _versions(updated) == {"t": 1, "g": 1}
    # A node added now gets the newest version; one given a version keeps it.
    added = only(
        await alice.gql(
            ADD,
            {
                "id": created["id"],
                "node": node("h", "Greet 2", "acme.greet"),
                "v": updated["version"],
            },
        )
    )
    assert _versions(added) == {"t": 1, "g": 1, "h": 2}
    pinned = node("i", "Greet 3", "acme.greet", typeVersion=1)
    again = only(await alice.gql(ADD, {"id": created["id"], "node": pinned, "v": added["version"]}))
    assert _versions(again)["i"] == 1
