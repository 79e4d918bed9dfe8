"""Nodes are saved with their type's version written down (engine.editing.pin_type_versions)."""

from __future__ import annotations

from engine.editing import pin_type_versions
from engine.graph import Graph, Node

LATEST = {"set": 2, "limit": 1}


def _graph(*nodes: Node) -> Graph:
    return Graph(nodes=nodes)


def _versions(graph: Graph) -> list[int | None]:
    return [node.type_version for node in graph.nodes]


def test_a_new_node_takes_its_types_latest_version() -> None:
    graph = _graph(Node(id="a", name="A", type="set"), Node(id="b", name="B", type="limit"))
    assert _versions(pin_type_versions(graph, LATEST.get)) == [2, 1]


def test_a_node_saved_again_without_its_version_keeps_the_one_it_had() -> None:
    previous = _graph(Node(id="a", name="A", type="set", type_version=1))
    sent_back = _graph(
        Node(id="a", name="A renamed", type="set"), Node(id="b", name="B", type="set")
    )
    assert _versions(pin_type_versions(sent_back, LATEST.get, previous)) == [1, 2]


def test_a_node_whose_type_changed_takes_the_new_types_latest() -> None:
    previous = _graph(Node(id="a", name="A", type="limit", type_version=1))
    changed = _graph(Node(id="a", name="A", type="set"))
    assert _versions(pin_type_versions(changed, LATEST.get, previous)) == [2]


def test_a_version_given_is_kept_and_an_unknown_type_is_left_alone() -> None:
    graph = _graph(
        Node(id="a", name="A", type="set", type_version=1),
        Node(id="b", name="B", type="no_such.type"),
    )
    pinned = pin_type_versions(graph, LATEST.get)
    assert _versions(pinned) == [1, None]
    assert pin_type_versions(pinned, LATEST.get) is pinned  # nothing to write: the same graph
