"""Pinned data: items stored on a workflow's draft as a node's fixed output (issue 16).

A manual execution gives a pinned node's items as its output without running it (its node
run's `source` is PINNED, see engine/executor.py); webhook, schedule, retry and sub-workflow
executions ignore pins. Pins are keyed by node id (a rename keeps them), live on the draft
like its nodes (every pin and unpin is a versioned draft change) and are copied into each
snapshot, so that an execution runs with the pins of the draft it snapshotted.

Pinned items are a node's output as the executor passes it on: a list of JSON objects, on
the node's first output port. All the pins of a draft together are bounded by
`GraphLimits.max_pinned_bytes` (they are read with the draft).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from engine.validation import GraphLimits, Problem
from engine.validation.text import quote, show

PINNED = "PINNED"

Pins = dict[str, list[dict[str, Any]]]


def item_problems(items: Any, field: str = "items", node_id: str | None = None) -> list[Problem]:
    """Why `items` cannot be pinned as a node's output: not a list, an item that is not a
    JSON object, or a value JSON cannot hold (each problem names where)."""
    if not isinstance(items, list):
        return [
            Problem(
                "INVALID_ITEMS",
                f"items must be a list of JSON objects, got {show(items)}",
                node_id,
                field,
            )
        ]
    problems = [
        Problem(
            "INVALID_ITEMS",
            f"item {index} must be a JSON object, got {show(item)}",
            node_id,
            f"{field}[{index}]",
        )
        for index, item in enumerate(items)
        if not isinstance(item, dict)
    ][:10]
    if problems:
        return problems
    try:
        orjson.dumps(items)
    except TypeError as exc:
        return [Problem("INVALID_ITEMS", f"items cannot be stored as JSON: {exc}", node_id, field)]
    return []


def size_problems(
    pins: Mapping[str, list[dict[str, Any]]],
    limits: GraphLimits,
    node_id: str | None = None,
    field: str = "items",
) -> list[Problem]:
    """PINS_TOO_LARGE when the pins of a draft together exceed the limit."""
    size = len(orjson.dumps(dict(pins)))
    if size <= limits.max_pinned_bytes:
        return []
    return [
        Problem(
            "PINS_TOO_LARGE",
            f"the pinned items of the workflow would take {size} bytes as JSON; at most "
            f"{limits.max_pinned_bytes} are allowed (pin fewer or smaller items)",
            node_id,
            field,
        )
    ]


def node_missing(node_id: str, field: str = "nodeId") -> Problem:
    return Problem(
        "NODE_NOT_FOUND", f"the workflow has no node with id {quote(node_id)}", node_id, field
    )


def kept(pins: Mapping[str, list[dict[str, Any]]], node_ids: Iterable[str]) -> Pins | None:
    """The pins of the nodes still in the graph; None when none was dropped (a node removed
    takes its pins with it)."""
    present = set(node_ids)
    if all(node_id in present for node_id in pins):
        return None
    return {node_id: items for node_id, items in pins.items() if node_id in present}
