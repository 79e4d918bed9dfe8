"""Outputs whose JSON is far larger than their memory: counted before they are encoded.

A value repeated by reference (a Set node writing `{{ $json.big }}` into many fields, Split
Out giving every item the same object, a cross join) takes its memory once and its size as
JSON every time it appears. Such an output must be refused before its JSON is built, and a
large output encoded a piece at a time, within its node's timeout and without holding the
event loop.
"""

from __future__ import annotations

import itertools
import random
import re
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from engine.executor import Executor, Outcome, RunOptions, RunRequest
from engine.graph import Edge, Graph, Node
from engine.memory_recorder import MemoryRecorder
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, Port
from engine.nodes.base import NodeError, NodeRunContext, PortItems, RunInfo
from engine.output_size import QUICK_VISITS, OutputSizes
from engine.outputs import serialize_outputs
from engine.plan import compile_plan
from engine.slices import at_once
from engine.states import ExecutionStatus
from storage.payloads import decode_chunked, pack
from tests.engine.node_runner import BUILTINS, context, longest_hold_s, run_node

MB = 1024 * 1024


@contextmanager
def peak_mb() -> Iterator[list[float]]:
    """The peak of Python's allocations inside the block, in MB, above where it started."""
    found: list[float] = []
    tracemalloc.start()
    try:
        yield found
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        found.append(peak / MB)


def refused(outputs: PortItems, max_bytes: int) -> NodeError:
    with pytest.raises(NodeError) as caught:
        serialize_outputs(outputs, max_bytes)
    assert caught.value.error_type == "NODE_OUTPUT_TOO_LARGE"
    return caught.value


def test_a_value_repeated_in_many_fields_is_refused_before_any_json_is_built() -> None:
    big = "x" * 100_000
    outputs = {"main": [{f"field{n}": big for n in range(1000)}]}  # 100 MB of JSON
    with peak_mb() as peak:
        error = refused(outputs, MB)
    assert peak[0] < 2, f"{peak[0]:.0f} MB"
    assert error.details["maxBytes"] == MB and error.details["bytes"] > MB
    assert "output 'main' item 0" in error.message


def test_items_sharing_a_large_value_are_refused_by_their_count() -> None:
    big = {"text": "y" * MB}
    outputs = {"main": [{"n": n, "shared": big} for n in range(1000)]}  # 1 GB of JSON
    with peak_mb() as peak:
        error = refused(outputs, 4 * MB)
    assert peak[0] < 4, f"{peak[0]:.0f} MB"
    assert "output 'main' item 3" in error.message  # the fourth item passes 4 MB


def test_numbers_cannot_amplify_a_large_item_past_the_limit() -> None:
    # Counted 1 byte and an comma each (2 MB in all, under the limit), encoded 24 bytes each
    # (25 MB): the item is encoded a piece at a time, and stops at the limit.
    outputs = {"main": [{"xs": [1.2345678901234567e-300] * 1_000_000}]}
    with peak_mb() as peak:
        error = refused(outputs, 4 * MB)
    assert peak[0] < 16, f"{peak[0]:.0f} MB"
    assert "output 'main' item 0" in error.message


LARGE_SHAPES: dict[str, PortItems] = {
    "long text with escapes": {"main": [{"s": '\u00e9\u0001"\\' * 300_000}, {"n": 1}]},
    "a long list of small objects": {
        "main": [{"rows": [{"a": n, "t": "x" * 50} for n in range(20_000)], "tail": [1, 2]}]
    },
    "large values at several depths": {
        "main": [
            {"n": 0},
            {"a": [[{"b": "z" * 400_000}, 1, "w" * 300_000, [], {}]], "c": {"d": ["q"] * 80_000}},
            {"e": ("tuple", "x" * 300_000)},
        ],
        "other": [{"f": "g" * 300_000}],
    },
}


@pytest.mark.parametrize("shape", LARGE_SHAPES)
def test_large_items_encoded_in_pieces_are_their_json(shape: str) -> None:
    outputs = LARGE_SHAPES[shape]
    encoded = serialize_outputs(outputs)
    whole = orjson.dumps(outputs)
    assert encoded.raw_bytes == len(whole)
    assert decode_chunked(pack(encoded)) == orjson.loads(whole)


def _type(name: str, behaviour: Any, *, inputs: tuple[str, ...] = ("main",)) -> NodeType:
    return NodeType(
        name=name,
        version=1,
        display_name=name,
        description=name,
        group=NodeGroup.TRIGGER if not inputs else NodeGroup.ACTION,
        inputs=tuple(Port(port) for port in inputs),
        parameters_schema={"type": "object"},
        execute=behaviour,
    )


async def _start(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    return {"main": inputs.get("main", [])}


# 100 MB of JSON, built before the run: the node returns it at once.
BIG_OUTPUT = {"main": [{"n": n, "s": "x" * MB} for n in range(100)]}


async def _big(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    return BIG_OUTPUT


REGISTRY = NodeTypeRegistry([_type("start", _start, inputs=()), _type("big", _big)])


def _request(nodes: list[Node], **fields: Any) -> RunRequest:
    edges = tuple(Edge(a.id, b.id) for a, b in itertools.pairwise(nodes))
    plan = compile_plan("v1", Graph(nodes=tuple(nodes), edges=edges), REGISTRY)
    return RunRequest(execution_id="e1", plan=plan, info=RunInfo(execution_id="e1"), **fields)


async def _run(request: RunRequest, limit: int | None = None) -> Outcome:
    options = RunOptions(max_node_output_bytes=limit)
    return await Executor(MemoryRecorder()).run(request, options)


async def test_encoding_a_large_output_gives_the_event_loop_turns() -> None:
    request = _request([Node("s", "Start", "start"), Node("b", "Big", "big")])
    outcome, held_s = await longest_hold_s(_run(request))
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert held_s < 0.05, f"the loop was held for {held_s * 1000:.0f} ms"


async def test_encoding_an_output_is_within_the_node_timeout() -> None:
    nodes = [Node("s", "Start", "start"), Node("b", "Big", "big", timeout_s=0.02)]
    outcome = await _run(_request(nodes))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_TIMEOUT", outcome.error


async def test_a_trigger_passing_on_an_input_past_the_limit_fails() -> None:
    # A webhook's request, larger than the output limit (the body limit is set apart).
    request_item = {"body": {"text": "b" * 100_000}}
    size = len(orjson.dumps(request_item))
    nodes = [Node("s", "Start", "start")]
    outcome = await _run(_request(nodes, input=request_item, input_bytes=size), 64 * 1024)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_OUTPUT_TOO_LARGE"
    assert outcome.error.message.startswith("node 'Start': produced more output than the limit")
    small = {"body": {"text": "b"}}
    fits = await _run(_request(nodes, input=small, input_bytes=len(orjson.dumps(small))), 64 * 1024)
    assert fits.status is ExecutionStatus.SUCCEEDED


# Behaviours that build many items count them as they go: past the limit they fail at once,
# naming the item that passed it, instead of building everything first.

SHARED = {"text": "s" * 100_000}
FAIL_FAST: dict[str, tuple[str, dict[str, Any], PortItems]] = {
    "set writing a large value into every item": (
        "set",
        {"fields": [{"name": "copy", "value": "{{ $json.shared }}"}]},
        {"main": [{"n": n, "shared": SHARED} for n in range(50_000)]},
    ),
    "split out keeping a large field in every item": (
        "split_out",
        {"field": "rows", "keepOtherFields": True},
        {"main": [{"shared": SHARED, "rows": list(range(200_000))}]},
    ),
    "merge joining every item with every other": (
        "merge",
        {"mode": "combine_by_key", "key": "k"},
        {
            "input1": [{"k": 1, "shared": SHARED, "n": n} for n in range(1000)],
            "input2": [{"k": 1, "m": m} for m in range(1000)],
        },
    ),
}


@pytest.mark.parametrize("case", FAIL_FAST)
async def test_behaviours_building_many_items_fail_once_past_the_limit(case: str) -> None:
    type_name, parameters, inputs = FAIL_FAST[case]
    ctx = context(type_name, parameters, inputs)
    ctx.max_output_bytes = 4 * MB
    with pytest.raises(NodeError) as caught:
        await BUILTINS[type_name].execute(ctx, inputs)
    error = caught.value
    assert error.error_type == "NODE_OUTPUT_TOO_LARGE"
    assert error.details["maxBytes"] == 4 * MB
    # Named where it passed the limit: a few dozen items of 100 to 200 KB in.
    found = re.search(r"past it with output 'main' item (\d+)$", error.message)
    assert found is not None and 15 < int(found[1]) < 45, error.message


async def test_a_parameter_holding_a_large_value_is_described_in_its_error() -> None:
    # 100 MB of JSON, 100 KB of memory: its error says what it is, and builds none of it.
    item = {"big": ["s" * 100_000] * 1000}
    with peak_mb() as peak, pytest.raises(NodeError) as caught:
        await run_node("limit", {"maxItems": "{{ $json.big }}"}, [item])
    assert peak[0] < 2, f"{peak[0]:.0f} MB"
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert caught.value.message == (
        "Parameter 'maxItems' must be a whole number of at least 1, got a list of 1,000 elements"
    )


def _value(rng: random.Random, depth: int, exact: bool) -> Any:
    """A random JSON value; with `exact`, one whose count is its size (ASCII text without
    escapes, one-digit numbers)."""
    kind = rng.randrange(6 if depth < 6 else 3)
    if kind == 0:
        return rng.randrange(10) if exact else rng.choice([-1.5e300, 12345678901, True, None])
    if kind in (1, 2):
        alphabet = "abc xyz" if exact else 'a"\\\u00e9\u0001\U0001f600'
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
    if kind == 3:
        return [_value(rng, depth + 1, exact) for _ in range(rng.randrange(6))]
    return {f"k{n}": _value(rng, depth + 1, exact) for n in range(rng.randrange(6))}


@pytest.mark.parametrize("exact", [True, False])
def test_counts_are_sizes_for_plain_data_and_never_more_than_sizes(exact: bool) -> None:
    rng = random.Random(13)
    shared = {"list": list(range(10)), "text": "t" * 50}
    for _ in range(300):
        items = [
            {f"f{n}": _value(rng, 1, exact) for n in range(rng.randrange(4))}
            for _ in range(rng.randrange(1, 5))
        ]
        items.append({"a": shared, "b": [shared, shared]})  # counted each time it appears
        if rng.random() < 0.1:  # long enough for the walk that can pause
            items.append({"long": [shared["list"]] * (QUICK_VISITS + 10)})
        size = len(orjson.dumps(items))
        count, item_counts = at_once(OutputSizes().count_items(items))
        assert count == size if exact else count <= size
        assert len(item_counts) == len(items)
