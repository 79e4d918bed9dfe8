"""Running to a node, reusing what is still valid (issue 16 point 2).

`executeWorkflow(id, destinationNodeId)` runs only the destination and what it needs (its
ancestors). An ancestor whose output an earlier manual execution (`reuseFrom`) produced is
not run again when nothing that makes its output has changed since: the node itself (type,
type version, parameters, credentials, disabled, retry, timeout, on error, pinned items) and
the same of every node upstream of it, with the edges between them. A content hash per node
and its ancestry says so: equal hashes in the two versions, equal outputs to expect.

The execution's input flows into the graph through its roots, so it is part of theirs: a run
with another input reuses nothing. The destination itself always runs (that is what the user
asked to see).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from engine.graph import Graph

REUSED = "REUSED"


class EarlierRun(NamedTuple):
    """The earlier node run whose output a reused node run gives (its payload row is
    copied), and that output's size as one JSON document when known (not for an output
    stored as a reference to the execution input)."""

    run_id: str
    raw_bytes: int | None


# What a node's output does not depend on: where it is drawn, its notes, its name (a rename
# rewrites the expressions that name it, so those nodes change instead).
_IRRELEVANT = ("name", "position", "notes")


def node_hashes(graph: Graph, pinned: Mapping[str, Any], execution_input: Any) -> dict[str, str]:
    """A content hash of each node and its ancestry (see the module docstring)."""
    incoming: dict[str, list[tuple[str, str, str]]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        if edge.target in incoming and edge.source in incoming:
            incoming[edge.target].append((edge.source, edge.source_output, edge.target_input))
    seed = orjson.dumps(execution_input, option=orjson.OPT_SORT_KEYS)
    nodes = {node.id: node for node in graph.nodes}
    hashes: dict[str, str] = {}
    # Iteratively, in dependency order (graphs that run have no cycles; a node of a cycle
    # gets no hash and is never reused).
    remaining = {node_id: len(edges) for node_id, edges in incoming.items()}
    ready = [node_id for node_id, count in remaining.items() if count == 0]
    outgoing: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    for target, edges in incoming.items():
        for source, _, _ in edges:
            outgoing[source].append(target)
    while ready:
        node_id = ready.pop()
        own = {k: v for k, v in nodes[node_id].to_json().items() if k not in _IRRELEVANT}
        upstream = sorted(
            (hashes[source], source_output, target_input)
            for source, source_output, target_input in incoming[node_id]
        )
        digest = hashlib.sha256()
        digest.update(orjson.dumps(own, option=orjson.OPT_SORT_KEYS))
        digest.update(orjson.dumps(pinned.get(node_id), option=orjson.OPT_SORT_KEYS))
        digest.update(orjson.dumps(upstream))
        if not incoming[node_id]:
            digest.update(seed)
        hashes[node_id] = digest.hexdigest()
        for target in outgoing[node_id]:
            remaining[target] -= 1
            if remaining[target] == 0:
                ready.append(target)
    return hashes


def reusable(
    now: Mapping[str, str], then: Mapping[str, str], succeeded: Mapping[str, Any], keep: Any
) -> set[str]:
    """The nodes whose output from then can stand for now's: same hash, and it succeeded
    then; only among `keep` (a destination's ancestors)."""
    return {
        node_id
        for node_id, digest in now.items()
        if node_id in keep and then.get(node_id) == digest and node_id in succeeded
    }


def ancestors(graph: Graph, node_id: str) -> set[str]:
    """The ids of the nodes upstream of a node (not the node)."""
    sources: dict[str, list[str]] = {}
    for edge in graph.edges:
        sources.setdefault(edge.target, []).append(edge.source)
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        for source in sources.get(stack.pop(), ()):
            if source not in seen:
                seen.add(source)
                stack.append(source)
    seen.discard(node_id)
    return seen
