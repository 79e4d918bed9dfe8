"""Single-step graph edits, and renames carrying expression references along."""

from __future__ import annotations

import pytest

from engine import editing
from engine.graph import Edge, Graph, Node


def _graph() -> Graph:
    return Graph(
        nodes=(
            Node("a", "Fetch", "noop"),
            Node("b", "Use", "set", parameters={"v": '{{ $("Fetch").first().id }}', "w": "Fetch"}),
            Node("c", "Other", "set", parameters={"v": '{{ $node["Fetch"].json.x }}'}),
        ),
        edges=(Edge("a", "b"), Edge("b", "c")),
    )


def test_renaming_a_node_rewrites_references_to_it() -> None:
    graph = _graph()
    renamed = editing.update_node(graph, "a", Node("a", "Load", "noop"))
    by_id = {node.id: node for node in renamed.nodes}
    assert by_id["b"].parameters == {"v": '{{ $("Load").first().id }}', "w": "Fetch"}
    assert by_id["c"].parameters == {"v": '{{ $node["Load"].json.x }}'}


def test_carry_renames_between_whole_graphs() -> None:
    before = _graph()
    after = Graph(
        nodes=(Node("a", "Load", "noop"), *before.nodes[1:]),
        edges=before.edges,
    )
    carried = editing.carry_renames(before, after)
    assert carried.nodes[1].parameters["v"] == '{{ $("Load").first().id }}'


def test_remove_node_removes_its_edges() -> None:
    graph = editing.remove_node(_graph(), "b")
    assert [node.id for node in graph.nodes] == ["a", "c"]
    assert graph.edges == ()


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda g: editing.update_node(g, "zz", Node("zz", "Z", "noop")), "NODE_NOT_FOUND"),
        (lambda g: editing.update_node(g, "a", Node("other", "Fetch", "noop")), "NODE_ID_CHANGED"),
        (lambda g: editing.remove_node(g, "zz"), "NODE_NOT_FOUND"),
        (lambda g: editing.remove_edge(g, Edge("c", "a")), "EDGE_NOT_FOUND"),
    ],
)
def test_edits_that_cannot_apply_say_why(edit, code: str) -> None:
    with pytest.raises(editing.EditError) as caught:
        edit(_graph())
    assert caught.value.code == code
