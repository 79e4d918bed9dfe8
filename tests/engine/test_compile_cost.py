"""What validating and planning a workflow costs the event loop: its expressions are
compiled once (refused ones too), and a graph whose expressions take seconds to compile is
compiled a slice at a time."""

from __future__ import annotations

import time

from engine.expressions.compiler import cache_counts
from engine.graph import Graph, Node
from engine.node_types import load_registry
from engine.plan import compile_plan, prepare_plan
from engine.validation import check_graph, validate_graph
from tests.event_loop import longest_hold

REGISTRY = load_registry()


def _graph(count: int, refused: bool = False) -> Graph:
    """A trigger and `count` nodes, each with one distinct expression of about 6,000
    characters (a list of 300 texts: about 1 ms to compile, 10 ms on a loaded machine), or
    one refused once parsed (`refused`: a chain of 4,990 comparisons, about 10 ms)."""
    token = time.perf_counter_ns()  # new to this process's compile cache
    nodes = [Node("start", "Start", "manual_trigger")]
    for index in range(count):
        if refused:
            source = "<".join([f"{token}{index}"] + ["1"] * 4990)
        else:
            source = "[" + ",".join(f"'{token}-{index}-{n}'" for n in range(300)) + "]"
        parameters = {"fields": [{"name": "v", "value": "{{ " + source + " }}"}]}
        nodes.append(Node(f"s{index}", f"Set {index}", "set", parameters=parameters))
    return Graph(nodes=tuple(nodes), edges=())


def test_a_graph_validated_again_compiles_nothing_again() -> None:
    graph = _graph(20, refused=True)
    first = validate_graph(graph, REGISTRY)
    assert len(first.all_problems()) == 20
    _, misses = cache_counts()
    again = validate_graph(graph, REGISTRY)
    assert again == first
    assert cache_counts()[1] == misses  # refused expressions come from the cache too


async def test_checking_a_graph_gives_the_loop_a_turn_between_expressions() -> None:
    graph = _graph(200, refused=True)
    async with longest_hold(without_old_garbage=True) as hold:
        report = await check_graph(graph, REGISTRY)
    assert len(report.all_problems()) == 200
    assert hold.longest_s < 0.1, f"{hold.longest_s * 1000:.0f} ms"


async def test_preparing_a_plan_gives_the_loop_a_turn_between_expressions() -> None:
    graph = _graph(300)
    async with longest_hold(without_old_garbage=True) as hold:
        plan = await prepare_plan("v", graph, REGISTRY)
    assert len(plan.nodes) == 301
    assert hold.longest_s < 0.1, f"{hold.longest_s * 1000:.0f} ms"
    assert compile_plan("v", graph, REGISTRY).nodes.keys() == plan.nodes.keys()


async def test_checking_literal_patterns_gives_the_loop_a_turn_between_patterns() -> None:
    # One node, 200 distinct literal patterns of about 950 characters: about 2 s of compiling.
    token = time.perf_counter_ns()
    conditions = [
        {"left": "{{ $json.a }}", "operator": "regex", "right": f"[a-z]{token}{index}" * 35}
        for index in range(200)
    ]
    graph = Graph(nodes=(Node("if", "If", "if", parameters={"conditions": conditions}),), edges=())
    async with longest_hold(without_old_garbage=True) as hold:
        report = await check_graph(graph, REGISTRY)
    assert report.all_problems() == []
    assert hold.longest_s < 0.1, f"{hold.longest_s * 1000:.0f} ms"
