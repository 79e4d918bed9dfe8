"""Workflow documents without a database: what an export writes, and how a read names what
is wrong."""

from __future__ import annotations

from dataclasses import replace

from engine.graph import Edge, Graph, Node, OnError, Position, RetryPolicy
from engine.validation import Problem
from engine.workflow_document import FORMAT_VERSION, export_document, read_document

GRAPH = Graph(
    nodes=(
        Node("t", "Start", "manual_trigger", 1),
        Node(
            "h",
            "Fetch",
            "http_request",
            1,
            parameters={"url": "https://example.com"},
            position=Position(200.0, 10.0),
            notes="n",
            retry=RetryPolicy(3, 2.0, 2.0, 60.0),
            timeout_s=30.0,
            on_error=OnError.CONTINUE,
            credentials={"bearer_token": "c-1", "basic_auth": "c-gone"},
        ),
    ),
    edges=(Edge("t", "h"),),
)


def _exported() -> dict:
    return export_document(
        name="Sync",
        description="d",
        tags=["a"],
        settings={"timezone": "UTC"},
        graph=GRAPH,
        credential_names={"c-1": "GitHub"},
    )


def test_an_export_names_credentials_and_reads_back_as_the_same_graph() -> None:
    document = _exported()
    assert list(document) == [
        "formatVersion",
        "name",
        "description",
        "tags",
        "settings",
        "nodes",
        "edges",
        "pinData",
    ]
    assert document["formatVersion"] == FORMAT_VERSION
    # A credential whose name is not known (deleted since) is left out, never given by id.
    assert document["nodes"][1]["credentials"] == {"bearer_token": {"name": "GitHub"}}
    read = read_document(document)
    assert read.problems == []
    assert (read.name, read.description, read.tags, read.settings) == (
        "Sync",
        "d",
        ["a"],
        {"timezone": "UTC"},
    )
    # Credentials by name, until an import links them to a workspace's.
    named = Graph(
        nodes=(GRAPH.nodes[0], replace(GRAPH.nodes[1], credentials={"bearer_token": "GitHub"})),
        edges=GRAPH.edges,
    )
    assert read.graph == named


def test_a_newer_format_version_is_the_only_problem() -> None:
    read = read_document({"formatVersion": FORMAT_VERSION + 1, "nodes": "anything"})
    assert [(p.code, p.field) for p in read.problems] == [
        ("UNSUPPORTED_FORMAT_VERSION", "formatVersion")
    ]


def test_problems_name_the_member_as_in_the_document() -> None:
    read = read_document(
        {
            "formatVersion": 1,
            "name": "x",
            "nodes": ["no", {"id": "a", "name": "A", "type": "noop", "credentials": {"k": "id"}}],
            "edges": [7, {"source": "a", "target": "ghost"}],
            "pinData": {"a": [7], "ghost": [{}]},
        }
    )
    assert [(p.code, p.node_id, p.field) for p in read.problems] == [
        ("INVALID_DOCUMENT", None, "nodes[0]"),
        ("INVALID_DOCUMENT", "a", "credentials"),
        ("INVALID_DOCUMENT", None, "edges[0]"),
        ("INVALID_ITEMS", None, "pinData.a[0]"),
        ("INVALID_DOCUMENT", None, "pinData.ghost"),
    ]
    # The graph leaves out what is not a node or an edge; validation's paths are mapped back.
    found = Problem("EDGE_TARGET_MISSING", "no node 'ghost'", None, "edges[0].target")
    assert read.in_document(found).field == "edges[1].target"
