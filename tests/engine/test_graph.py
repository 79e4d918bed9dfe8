"""The graph model: JSON conversion as stored in the database and in version snapshots."""

from __future__ import annotations

import json

from engine.graph import DEFAULT_PORT, Edge, Graph, Node, OnError, Position, RetryPolicy


def _full_node() -> Node:
    return Node(
        id="n1",
        name="Fetch orders 🚀",
        type="acme.greet",
        type_version=2,
        parameters={"greeting": "Hi {{ $json.name }}", "nested": {"list": [1, 2.5, None, True]}},
        position=Position(x=120.5, y=-40.0),
        disabled=True,
        notes="Runs nightly",
        retry=RetryPolicy(max_attempts=3, backoff_s=0.5, backoff_factor=3.0, max_backoff_s=30.0),
        timeout_s=12.5,
        on_error=OnError.ERROR_OUTPUT,
        credentials={"http_basic": "cred-1"},
    )


def test_node_round_trips_through_json() -> None:
    node = _full_node()
    assert Node.from_json(node.to_json()) == node


def test_node_json_uses_camel_case_keys() -> None:
    data = _full_node().to_json()
    assert data["typeVersion"] == 2
    assert data["timeoutSeconds"] == 12.5
    assert data["onError"] == "ERROR_OUTPUT"
    assert data["retry"] == {
        "maxAttempts": 3,
        "backoffSeconds": 0.5,
        "backoffFactor": 3.0,
        "maxBackoffSeconds": 30.0,
    }


def test_minimal_node_json_gets_defaults() -> None:
    node = Node.from_json({"id": "a", "name": "A", "type": "noop"})
    assert node == Node(id="a", name="A", type="noop")
    assert node.retry is None
    assert node.on_error is OnError.STOP
    assert node.position == Position()


def test_edge_round_trips_and_defaults_to_main_ports() -> None:
    edge = Edge(source="a", target="b", source_output="true", target_input="input2")
    assert Edge.from_json(edge.to_json()) == edge
    assert Edge.from_json({"source": "a", "target": "b"}) == Edge("a", "b", DEFAULT_PORT, "main")


def test_graph_round_trips_through_json_text() -> None:
    graph = Graph(
        nodes=(_full_node(), Node(id="n2", name="Done", type="noop")),
        edges=(Edge("n1", "n2"),),
    )
    # Through real JSON text, as the database stores it.
    nodes = json.loads(json.dumps(graph.nodes_to_json()))
    edges = json.loads(json.dumps(graph.edges_to_json()))
    assert Graph.from_json(nodes, edges) == graph


def test_graph_keeps_node_order_and_finds_nodes_by_id() -> None:
    graph = Graph(nodes=tuple(Node(id=f"n{i}", name=f"N{i}", type="noop") for i in range(5)))
    assert [node.id for node in Graph.from_json(graph.nodes_to_json(), []).nodes] == [
        "n0",
        "n1",
        "n2",
        "n3",
        "n4",
    ]
    assert graph.node("n3") == graph.nodes[3]
    assert graph.node("missing") is None
