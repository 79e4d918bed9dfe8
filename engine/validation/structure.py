"""Structural checks of the graph's size and of each node taken alone."""

from __future__ import annotations

import math
from collections.abc import Iterator

from engine.graph import Graph, Node
from engine.node_types import NodeType, NodeTypeLookup
from engine.validation.report import GraphLimits, Problem
from engine.validation.text import BAD_IN_LABEL, codepoint, quote, show


def size_problems(graph: Graph, limits: GraphLimits) -> list[Problem]:
    problems = []
    if len(graph.nodes) > limits.max_nodes:
        problems.append(
            Problem(
                "TOO_MANY_NODES",
                f"The workflow has {len(graph.nodes)} nodes; the limit is {limits.max_nodes}",
                field="nodes",
            )
        )
    if len(graph.edges) > limits.max_edges:
        problems.append(
            Problem(
                "TOO_MANY_EDGES",
                f"The workflow has {len(graph.edges)} connections; the limit is {limits.max_edges}",
                field="edges",
            )
        )
    return problems


def node_problems(
    index: int,
    node: Node,
    node_type: NodeType | None,
    registry: NodeTypeLookup,
    limits: GraphLimits,
) -> Iterator[Problem]:
    """Problems of one node taken alone: id, name, type, retry and timeout."""
    if not node.id.strip():
        yield Problem("EMPTY_ID", f"Node {index + 1} has no id", None, f"nodes[{index}].id")
    elif match := BAD_IN_LABEL.search(node.id):
        yield Problem(
            "INVALID_CHARACTER",
            f"Node id contains the character {codepoint(match.group())}, which is not allowed",
            node.id,
            "id",
        )
    if not node.name.strip():
        yield Problem("EMPTY_NAME", "Node name must not be empty", node.id, "name")
    elif len(node.name) > limits.max_name_length:
        yield Problem(
            "NAME_TOO_LONG",
            f"Node name is {len(node.name)} characters long; the limit is {limits.max_name_length}",
            node.id,
            "name",
        )
    if match := BAD_IN_LABEL.search(node.name):
        yield Problem(
            "INVALID_CHARACTER",
            f"Node name contains the character {codepoint(match.group())}, which is not allowed",
            node.id,
            "name",
        )
    if node_type is None:
        if registry.has_name(node.type):
            available = ", ".join(
                str(known.version) for known in registry.all() if known.name == node.type
            )
            yield Problem(
                "UNKNOWN_TYPE_VERSION",
                f"Node type {quote(node.type)} has no version {node.type_version} "
                f"(available: {available})",
                node.id,
                "typeVersion",
            )
        else:
            yield Problem(
                "UNKNOWN_NODE_TYPE",
                f"Unknown node type {quote(node.type)}; is the plugin that provides it installed?",
                node.id,
                "type",
            )
    yield from _retry_problems(node, limits)
    if node.timeout_s is not None and not (
        _is_finite_number(node.timeout_s) and 0 < node.timeout_s <= limits.max_timeout_s
    ):
        yield Problem(
            "INVALID_TIMEOUT",
            f"Timeout must be more than 0 and at most {limits.max_timeout_s:g} seconds "
            f"(got {show(node.timeout_s)})",
            node.id,
            "timeoutSeconds",
        )


def _retry_problems(node: Node, limits: GraphLimits) -> Iterator[Problem]:
    retry = node.retry
    if retry is None:
        return
    attempts = retry.max_attempts
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= limits.max_retry_attempts
    ):
        yield Problem(
            "INVALID_RETRY",
            f"Retry attempts must be a whole number from 1 to {limits.max_retry_attempts} "
            f"(got {show(attempts)})",
            node.id,
            "retry.maxAttempts",
        )
    checks = (
        ("backoffSeconds", retry.backoff_s, 0.0, "Wait between retries"),
        ("backoffFactor", retry.backoff_factor, 1.0, "Retry backoff factor"),
        ("maxBackoffSeconds", retry.max_backoff_s, 0.0, "Longest wait between retries"),
    )
    for field, value, minimum, label in checks:
        if not (_is_finite_number(value) and value >= minimum):
            yield Problem(
                "INVALID_RETRY",
                f"{label} must be a number of at least {minimum:g} (got {show(value)})",
                node.id,
                f"retry.{field}",
            )


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
