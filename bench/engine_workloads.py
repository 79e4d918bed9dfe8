"""The workflows and data of `bench/engine.py`, and the floors they are measured against.

A floor calls the node types' `execute` behaviours directly, in the order the executor would,
with the inputs and `NodeRunContext`s it would build: what is left once the executor, the
recorder and the database are taken away.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import string
from typing import Any

from engine.graph import Edge, Graph, Node
from engine.nodes.base import Item, NodeRunContext, PortItems, RunInfo
from engine.plan import Plan

CHAIN_FIELD = {"name": "n", "value": "{{ $json.n + 1 }}"}
WAIT_S = 0.01
COUNTRIES = ("DE", "FR", "US", "GB", "JP", "BR", "IN", "NG", "ES", "IT", "NL", "SE")
BIG_DATA_SCORE_KEPT = 500  # `score` is uniform on 0..999, so the filter keeps half the items


def bench_info(execution_id: str = "bench") -> RunInfo:
    return RunInfo(
        execution_id=execution_id,
        workflow_id="bench",
        workflow_name="bench",
        workflow_version=1,
        now="2025-01-01T00:00:00+00:00",
    )


def _node(node_id: str, name: str, node_type: str, **parameters: Any) -> Node:
    return Node(id=node_id, name=name, type=node_type, parameters=parameters)


def _trigger() -> Node:
    return _node("start", "Start", "manual_trigger")


def chain_graph(nodes: int) -> Graph:
    """The trigger and `nodes - 1` set nodes in a line, each writing `n = {{ $json.n + 1 }}`."""
    chain = [_trigger()]
    chain += [_node(f"set{i}", f"Set {i}", "set", fields=[CHAIN_FIELD]) for i in range(1, nodes)]
    edges = [Edge(source=a.id, target=b.id) for a, b in itertools.pairwise(chain)]
    return Graph(nodes=tuple(chain), edges=tuple(edges))


def _waits(branches: int) -> list[Node]:
    return [
        _node(f"wait{i}", f"Wait {i}", "wait", amount=WAIT_S, unit="seconds")
        for i in range(branches)
    ]


def fan_out_graph(branches: int) -> Graph:
    """Trigger -> `branches` parallel waits -> one `noop` whose input takes every branch.

    Several edges into one port are concatenated in edge order, which is exactly `merge` in
    append mode; `merge` itself takes one edge per input, so it needs a tree (see below).
    """
    waits = _waits(branches)
    join = _node("join", "Join", "noop")
    edges = [Edge(source="start", target=wait.id) for wait in waits]
    edges += [Edge(source=wait.id, target=join.id) for wait in waits]
    return Graph(nodes=(_trigger(), *waits, join), edges=tuple(edges))


def merge_tree_graph(branches: int) -> Graph:
    """Trigger -> `branches` parallel waits -> a binary tree of `merge` nodes (append).

    `branches - 1` merges in about log2(branches) levels; a level with an odd count passes its
    last branch up unmerged.
    """
    waits = _waits(branches)
    nodes: list[Node] = [_trigger(), *waits]
    edges = [Edge(source="start", target=wait.id) for wait in waits]
    level = [wait.id for wait in waits]
    count = 0
    while len(level) > 1:
        upper: list[str] = []
        for left, right in zip(level[::2], level[1::2], strict=False):
            count += 1
            merge = _node(f"merge{count}", f"Merge {count}", "merge", mode="append")
            nodes.append(merge)
            edges.append(Edge(source=left, target=merge.id, target_input="input1"))
            edges.append(Edge(source=right, target=merge.id, target_input="input2"))
            upper.append(merge.id)
        if len(level) % 2:
            upper.append(level[-1])
        level = upper
    return Graph(nodes=tuple(nodes), edges=tuple(edges))


def big_data_graph() -> Graph:
    """Trigger -> split_out(items) -> set -> filter -> sort -> aggregate (all items)."""
    nodes = (
        _trigger(),
        _node("split", "Split items", "split_out", field="items"),
        _node(
            "total",
            "Total",
            "set",
            fields=[{"name": "total", "value": "{{ $json.price * $json.quantity }}"}],
        ),
        _node(
            "keep",
            "Keep high scores",
            "filter",
            conditions=[
                {"left": "{{ $json.score }}", "operator": "gte", "right": BIG_DATA_SCORE_KEPT}
            ],
        ),
        _node("order", "By total", "sort", fields=[{"field": "total", "order": "desc"}]),
        _node("collect", "Collect", "aggregate", mode="all_items", destinationField="data"),
    )
    edges = tuple(Edge(source=a.id, target=b.id) for a, b in itertools.pairwise(nodes))
    return Graph(nodes=nodes, edges=edges)


def ten_node_graph() -> Graph:
    """A typical small workflow: set, filter, if with two branches, merge, sort, limit,
    aggregate; every node but the trigger holds expressions or settings to compile."""
    nodes = (
        _trigger(),
        _node(
            "price",
            "Price",
            "set",
            fields=[
                {"name": "total", "value": "{{ $json.price * $json.qty }}"},
                {"name": "label", "value": "Order {{ $json.id }}"},
            ],
        ),
        _node(
            "positive",
            "Positive",
            "filter",
            conditions=[{"left": "{{ $json.total }}", "operator": "gt", "right": 0}],
        ),
        _node(
            "big",
            "Big?",
            "if",
            conditions=[{"left": "{{ $json.total }}", "operator": "gte", "right": 100}],
        ),
        _node("large", "Large", "set", fields=[{"name": "size", "value": "large"}]),
        _node("small", "Small", "set", fields=[{"name": "size", "value": "small"}]),
        _node("join", "Join", "merge", mode="append"),
        _node("order", "Order", "sort", fields=[{"field": "total", "order": "desc"}]),
        _node("top", "Top", "limit", maxItems=5),
        _node("collect", "Collect", "aggregate", mode="fields", fields=[{"field": "total"}]),
    )
    edges = (
        Edge(source="start", target="price"),
        Edge(source="price", target="positive"),
        Edge(source="positive", target="big"),
        Edge(source="big", target="large", source_output="true"),
        Edge(source="big", target="small", source_output="false"),
        Edge(source="large", target="join", target_input="input1"),
        Edge(source="small", target="join", target_input="input2"),
        Edge(source="join", target="order"),
        Edge(source="order", target="top"),
        Edge(source="top", target="collect"),
    )
    return Graph(nodes=nodes, edges=edges)


_FLOOR_INFO = bench_info()
TEN_NODE_INPUT: Item = {"id": 7, "price": 30, "qty": 4}


def make_items(count: int) -> list[Item]:
    """`count` order-like items of about 1,087 bytes of JSON each, the same on every call."""
    rng = random.Random(20250101)
    words = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10))) for _ in range(4096)
    ]
    sentences = [" ".join(rng.choices(words, k=12)).capitalize() + "." for _ in range(4096)]
    return [
        {
            "id": i,
            "sku": f"SKU-{i:08d}",
            "customer": {
                "name": f"Customer {i % 7919}",
                "email": f"customer{i % 7919}@example.com",
                "country": COUNTRIES[i % len(COUNTRIES)],
            },
            "price": i * 7919 % 10000 / 100,
            "quantity": i % 17 + 1,
            "score": i * 7919 % 1000,
            "active": i % 3 != 0,
            "tags": [words[i % 4096], words[i * 7 % 4096], words[i * 13 % 4096]],
            "createdAt": f"2025-{i % 12 + 1:02d}-{i % 28 + 1:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            "description": " ".join(sentences[(i * 31 + k * 977) % 4096] for k in range(9)),
        }
        for i in range(count)
    ]


async def _call(plan: Plan, node_id: str, inputs: PortItems, named: dict[str, Any]) -> PortItems:
    """One behaviour call with the context the executor would build."""
    plan_node = plan.nodes[node_id]
    main_input = inputs.get("main") or next(iter(inputs.values()), [])
    context = NodeRunContext(
        node=plan_node.node,
        compiled=plan_node.compiled,
        info=_FLOOR_INFO,
        main_input=main_input,
        node_outputs=named,
    )
    outputs: PortItems = await plan_node.node_type.execute(context, inputs)
    named[plan_node.node.name] = outputs.get("main", [])
    return outputs


async def linear_floor(plan: Plan, item: Item) -> list[Item]:
    """The behaviours of a linear plan, called one after the other on their `main` items."""
    named: dict[str, Any] = {}
    items = [item]
    for node_id in plan.topological:
        items = (await _call(plan, node_id, {"main": items}, named))["main"]
    return items


async def fan_out_floor(plan: Plan, item: Item) -> list[Item]:
    """Trigger, then every wait at once (`asyncio.gather`), then the junction on their items
    concatenated in edge order."""
    named: dict[str, Any] = {}
    started = (await _call(plan, "start", {"main": [item]}, named))["main"]
    waits = [node_id for node_id in plan.topological if node_id.startswith("wait")]
    outputs = await asyncio.gather(
        *(_call(plan, node_id, {"main": started}, named) for node_id in waits)
    )
    joined = [output_item for output in outputs for output_item in output["main"]]
    return (await _call(plan, "join", {"main": joined}, named))["main"]
