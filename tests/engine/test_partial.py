"""The content hash of a node and its ancestry (engine/partial.py): what changes it and what
does not."""

from __future__ import annotations

from typing import Any

import pytest

from engine.graph import Graph
from engine.node_types import load_registry
from engine.outputs import PREVIEW_MAX_BYTES, preview
from engine.partial import ancestors, node_hashes, reusable
from engine.plan import PlanError, compile_plan

REGISTRY = load_registry()


def graph(**changes: dict[str, Any]) -> Graph:
    """Start -> A -> B -> C, and Start -> Side; `changes` replace members of a node."""
    nodes: list[dict[str, Any]] = [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {"id": "a", "name": "A", "type": "set", "parameters": {"fields": []}},
        {"id": "b", "name": "B", "type": "noop"},
        {"id": "c", "name": "C", "type": "noop"},
        {"id": "side", "name": "Side", "type": "noop"},
    ]
    nodes = [{**node, **changes.get(node["id"], {})} for node in nodes]
    edges = [
        {"source": "start", "target": "a"},
        {"source": "a", "target": "b"},
        {"source": "b", "target": "c"},
        {"source": "start", "target": "side"},
    ]
    return Graph.from_json(nodes, edges)


def changed(then: dict[str, str], now: dict[str, str]) -> set[str]:
    return {node_id for node_id in now if then.get(node_id) != now[node_id]}


BASE = node_hashes(graph(), {}, {})


def test_the_same_graph_and_input_hash_alike() -> None:
    assert node_hashes(graph(), {}, {}) == BASE
    assert len(set(BASE.values())) == len(BASE)


def test_a_parameter_change_changes_the_node_and_everything_after_it() -> None:
    now = node_hashes(graph(a={"parameters": {"fields": [{"name": "x", "value": 1}]}}), {}, {})
    assert changed(BASE, now) == {"a", "b", "c"}


def test_position_notes_and_name_do_not_count() -> None:
    now = node_hashes(graph(b={"name": "Renamed", "notes": "n", "position": {"x": 5}}), {}, {})
    assert changed(BASE, now) == set()


def test_type_version_disabled_and_pins_count() -> None:
    assert changed(BASE, node_hashes(graph(b={"typeVersion": 2}), {}, {})) == {"b", "c"}
    assert changed(BASE, node_hashes(graph(b={"disabled": True}), {}, {})) == {"b", "c"}
    assert changed(BASE, node_hashes(graph(), {"b": [{"x": 1}]}, {})) == {"b", "c"}


def test_another_input_changes_every_node_it_reaches() -> None:
    assert changed(BASE, node_hashes(graph(), {}, {"x": 1})) == set(BASE)


def test_reusable_nodes_are_unchanged_ancestors_that_succeeded() -> None:
    now = node_hashes(graph(c={"notes": "x", "parameters": {"p": 1}}), {}, {})
    keep = ancestors(graph(), "c")
    assert keep == {"start", "a", "b"}
    assert reusable(now, BASE, {"start": 1, "a": 1, "side": 1}, keep) == {"start", "a"}


def _plan_problems(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], only: str) -> Any:
    try:
        plan = compile_plan("v", Graph.from_json(nodes, edges), REGISTRY, only=only)
    except PlanError as exc:
        return sorted((problem.code, problem.node_id) for problem in exc.problems)
    return sorted(plan.nodes)


def test_a_node_run_alone_is_planned_whatever_the_rest_of_the_graph() -> None:
    """`executeNode`'s plan holds the node alone, without edges: a dangling edge elsewhere,
    an unknown port on an edge into it, a cycle through it, another node of an unknown type
    do not stop it; its own problems do."""
    nodes: list[dict[str, Any]] = [
        {"id": "start", "name": "Start", "type": "manual_trigger"},
        {"id": "c", "name": "C", "type": "noop"},
        {"id": "d", "name": "D", "type": "noop"},
        {"id": "odd", "name": "Odd", "type": "no_such_type"},
        {"id": "", "name": "Nameless", "type": "noop"},
    ]
    edges = [
        {"source": "start", "target": "c", "targetInput": "nope"},
        {"source": "ghost", "target": "start"},
        {"source": "odd", "target": "nowhere"},
        {"source": "c", "target": "d"},
        {"source": "d", "target": "c"},
    ]
    assert _plan_problems(nodes, edges, "c") == ["c"]
    assert _plan_problems(nodes, edges, "odd") == [("UNKNOWN_NODE_TYPE", "odd")]
    # A whole plan still needs every node and edge valid.
    with pytest.raises(PlanError):
        compile_plan("v", Graph.from_json(nodes, edges), REGISTRY)


class _NotJson:
    """A value orjson cannot encode: a preview that measured it by encoding would raise."""


def test_a_reused_outputs_preview_takes_its_size_from_the_earlier_output() -> None:
    """A reused node run's event preview: the earlier output's size says whether its first
    item is small (it is shown) or, alone, too large (it is not), without encoding it again
    (megabytes) to find out."""
    small = [{"x": 1}]
    assert preview(small, None, None, 9) == {"x": 1}
    large = [{"blob": _NotJson()}]
    assert preview(large, None, None, PREVIEW_MAX_BYTES * 100) is None
    with pytest.raises(TypeError):  # unknown size: measured by encoding it
        preview(large, None, None)
