"""Structural checks of the connections: missing ends and ports, duplicates, loops, cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.graph import ERROR_PORT, Edge, Graph, Node, OnError
from engine.node_types import NodeType
from engine.validation.cycles import find_cycles
from engine.validation.report import Problem
from engine.validation.text import label, quote

_MAX_CYCLE_NODES_SHOWN = 30


def edge_problems(
    graph: Graph, nodes_by_id: Mapping[str, tuple[Node, NodeType | None]]
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str, str, str]] = set()
    successors: dict[str, list[str]] = {}
    single_inputs: dict[tuple[str, str], list[int]] = {}
    for index, edge in enumerate(graph.edges):
        where = f"edges[{index}]"
        source = nodes_by_id.get(edge.source)
        target = nodes_by_id.get(edge.target)
        if source is None:
            problems.append(
                Problem(
                    "EDGE_SOURCE_MISSING",
                    f"{_describe_edge(edge, nodes_by_id)}: there is no node with id "
                    f"{quote(edge.source)}",
                    None,
                    f"{where}.source",
                )
            )
        elif source[1] is not None and not _has_output(source[0], source[1], edge.source_output):
            problems.append(
                Problem(
                    "UNKNOWN_OUTPUT_PORT",
                    f"Node {label(source[0])} has no output {quote(edge.source_output)} "
                    f"({_port_list('outputs', source[1].outputs)})",
                    edge.source,
                    f"{where}.sourceOutput",
                )
            )
        target_port = None
        if target is None:
            problems.append(
                Problem(
                    "EDGE_TARGET_MISSING",
                    f"{_describe_edge(edge, nodes_by_id)}: there is no node with id "
                    f"{quote(edge.target)}",
                    None,
                    f"{where}.target",
                )
            )
        elif target[1] is not None:
            target_port = target[1].input(edge.target_input)
            if target_port is None:
                problems.append(
                    Problem(
                        "UNKNOWN_INPUT_PORT",
                        f"Node {label(target[0])} has no input {quote(edge.target_input)} "
                        f"({_port_list('inputs', target[1].inputs)})",
                        edge.target,
                        f"{where}.targetInput",
                    )
                )
        key = (edge.source, edge.source_output, edge.target, edge.target_input)
        if key in seen:
            problems.append(
                Problem(
                    "DUPLICATE_EDGE",
                    f"{_describe_edge(edge, nodes_by_id)} appears more than once",
                    edge.source,
                    where,
                )
            )
            continue
        seen.add(key)
        if source is None or target is None:
            continue
        if edge.source == edge.target:
            problems.append(
                Problem(
                    "SELF_LOOP",
                    f"Node {label(source[0])} is connected to itself",
                    edge.source,
                    where,
                )
            )
            continue
        successors.setdefault(edge.source, []).append(edge.target)
        if target_port is not None and not target_port.accepts_many:
            single_inputs.setdefault((edge.target, edge.target_input), []).append(index)
    for (target_id, port_name), indexes in single_inputs.items():
        if len(indexes) > 1:
            problems.append(
                Problem(
                    "TOO_MANY_INPUT_EDGES",
                    f"Input {quote(port_name)} of node {label(nodes_by_id[target_id][0])} "
                    f"takes one connection, but {len(indexes)} are connected",
                    target_id,
                    f"edges[{indexes[1]}].targetInput",
                )
            )
    for cycle in find_cycles(list(nodes_by_id), successors):
        names = [label(nodes_by_id[node_id][0], quoted=False) for node_id in cycle]
        if len(names) > _MAX_CYCLE_NODES_SHOWN:
            hidden = len(names) - _MAX_CYCLE_NODES_SHOWN
            names = [*names[:_MAX_CYCLE_NODES_SHOWN], f"... ({hidden} more)"]
        problems.append(
            Problem(
                "CYCLE",
                f"Connections form a cycle: {' -> '.join(names)} -> {names[0]}",
                cycle[0],
            )
        )
    return problems


def _describe_edge(edge: Edge, nodes_by_id: Mapping[str, tuple[Node, NodeType | None]]) -> str:
    def end(node_id: str, port: str) -> str:
        known = nodes_by_id.get(node_id)
        text = label(known[0]) if known else quote(node_id)
        return text if port == "main" else f"{text} ({quote(port)})"

    return (
        f"Connection from {end(edge.source, edge.source_output)} "
        f"to {end(edge.target, edge.target_input)}"
    )


def _port_list(kind: str, ports: Sequence[Any]) -> str:
    if not ports:
        return f"it has no {kind}"
    return f"{kind}: {', '.join(port.name for port in ports)}"


def _has_output(node: Node, node_type: NodeType, port: str) -> bool:
    """Whether the node emits on `port`: its type's outputs, plus `error` when its errors are
    routed there (onError ERROR_OUTPUT)."""
    if node_type.output(port) is not None:
        return True
    return port == ERROR_PORT and node.on_error is OnError.ERROR_OUTPUT
