"""Node outputs are encoded in chunks under a size limit; errors and previews stay small."""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
import pytest

from engine.events import ErrorInfo, EventType
from engine.executor import Executor, RunOptions, RunRequest
from engine.graph import Edge, Graph, Node, OnError
from engine.memory_recorder import MemoryRecorder
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, Port
from engine.nodes.base import NodeError, NodeRunContext, PortItems, RunInfo
from engine.output_limit import MIN_MAX_NODE_OUTPUT_BYTES
from engine.output_pages import MIN_PAGE_BYTES, page_of
from engine.outputs import CHUNK_BYTES, PREVIEW_MAX_BYTES, SPLIT_BYTES, preview, serialize_outputs
from engine.plan import compile_plan
from engine.states import ExecutionStatus, NodeRunStatus
from engine.truncation import MAX_ERROR_DETAILS_BYTES, MAX_ERROR_MESSAGE_CHARS, bounded_error
from storage.payloads import ChunkIndex, decode_chunked, pack

SHAPES: dict[str, PortItems] = {
    "nothing": {},
    "empty ports": {"main": [], "error": []},
    "one small item": {"main": [{"price": 4, "qty": 5}]},
    "two ports": {"true": [{"a": 1}], "false": [{"b": '\u00e9\u0000"\\'}, {"c": [1, 2.5]}]},
    "many small items": {"main": [{"n": n, "name": f"row {n}"} for n in range(20_000)]},
    "large items": {"main": [{"s": "x" * 300_000} for _ in range(20)]},
    "a large item among small ones": {
        "main": [{"n": n} for n in range(3000)] + [{"s": "y" * 1_000_000}] + [{"n": 1}] * 3000
    },
    "escaped port name": {'a"b\\': [{"x": 1}]},
}


@pytest.mark.parametrize("shape", SHAPES)
def test_chunks_hold_the_output_and_its_size_is_its_size_as_json(shape: str) -> None:
    outputs = SHAPES[shape]
    encoded = serialize_outputs(outputs)
    assert encoded.raw_bytes == len(orjson.dumps(outputs))
    assert decode_chunked(pack(encoded)) == outputs
    for chunk in encoded.chunks:  # a page reads a chunk whole: none is much larger than needed
        assert chunk.count == 1 or len(chunk.data) <= SPLIT_BYTES
        items = outputs[chunk.port][chunk.first : chunk.first + chunk.count]
        assert orjson.loads(chunk.data) == items
    index = ChunkIndex.parse(pack(encoded))
    assert index.ports == [(port, len(items)) for port, items in outputs.items()]


def test_small_items_share_chunks_and_large_ones_have_their_own() -> None:
    encoded = serialize_outputs(SHAPES["a large item among small ones"])
    large = [chunk for chunk in encoded.chunks if len(chunk.data) > CHUNK_BYTES]
    assert [(chunk.first, chunk.count) for chunk in large] == [(3000, 1)]
    assert len(encoded.chunks) < 20


def test_an_output_at_the_limit_passes_and_one_byte_more_is_refused() -> None:
    outputs = {"main": [{"n": n, "pad": "p" * 50} for n in range(5000)]}
    size = len(orjson.dumps(outputs))
    assert serialize_outputs(outputs, size).raw_bytes == size
    with pytest.raises(NodeError) as refused:
        serialize_outputs(outputs, size - 1)
    error = refused.value
    assert error.error_type == "NODE_OUTPUT_TOO_LARGE"
    assert error.details["maxBytes"] == size - 1 and error.details["bytes"] >= size
    assert error.details["setting"] == "LOOM_MAX_NODE_OUTPUT_BYTES"
    assert f"limit of {size - 1:,} bytes" in error.message and "output 'main' item" in error.message


def test_encoding_stops_at_the_limit_and_never_reaches_what_follows() -> None:
    # Past the limit early on, then a value that cannot be encoded: the refusal is the size,
    # so nothing after the point where the limit was passed was encoded.
    outputs = {"main": [{"s": "x" * 1000} for _ in range(200)] + [{"bad": object()}]}
    with pytest.raises(NodeError) as refused:
        serialize_outputs(outputs, 100_000)
    assert refused.value.error_type == "NODE_OUTPUT_TOO_LARGE"
    assert refused.value.details["bytes"] < 200_000


def test_a_large_first_item_is_not_encoded_again_for_the_event_preview() -> None:
    encoded = serialize_outputs({"main": [{"s": "x" * 100_000}]})
    # Anything that encoding `items[0]` again would raise on: the size came from the chunk.
    assert preview([{"unencodable": object()}], encoded, None) is None
    small = serialize_outputs({"main": [{"a": 1}]})
    assert preview([{"a": 1}], small, None) == {"a": 1}
    shared = serialize_outputs({"main": [{"s": "x" * PREVIEW_MAX_BYTES}, {"a": 1}]})
    assert preview([{"s": "x" * PREVIEW_MAX_BYTES}, {"a": 1}], shared, None) is None
    assert preview([{"a": 1}], None, 7) == {"a": 1}
    assert preview([{"a": 1}], None, PREVIEW_MAX_BYTES + 1) is None


def test_errors_are_kept_small_whatever_raised_them() -> None:
    error = ErrorInfo(
        "NODE_CRASHED",
        "m" * 1_000_000,
        {"expression": "e" * 100_000, "parameter": "value", "body": {"rows": list(range(10**5))}},
    )
    bounded = bounded_error(error)
    assert bounded.message.startswith("m" * MAX_ERROR_MESSAGE_CHARS)
    assert bounded.message.endswith(f"... ({1_000_000 - MAX_ERROR_MESSAGE_CHARS} more characters)")
    assert len(orjson.dumps(bounded.details)) <= MAX_ERROR_DETAILS_BYTES
    assert bounded.details["parameter"] == "value"
    assert bounded.details["expression"]["$truncated"] is True
    assert bounded.details["expression"]["bytes"] == 100_002
    assert bounded.details["expression"]["preview"].startswith('"eee')
    many = ErrorInfo("X", "m", {f"key{n}": n for n in range(10_000)})
    assert len(orjson.dumps(bounded_error(many).details)) <= MAX_ERROR_DETAILS_BYTES
    small = ErrorInfo("X", "fine", {"a": 1})
    assert bounded_error(small) is small


def test_run_options_refuse_a_limit_no_error_item_fits_under() -> None:
    with pytest.raises(ValueError, match="at least"):
        RunOptions(max_node_output_bytes=MIN_MAX_NODE_OUTPUT_BYTES - 1)
    assert RunOptions(max_node_output_bytes=None).max_node_output_bytes is None


async def _sized(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    parameters = ctx.parameters()
    return {"main": [{"s": "x" * parameters["chars"]} for _ in range(parameters["items"])]}


async def _loud(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    raise NodeError("y" * 5_000_000, error_type="LOUD", details={"dump": "z" * 5_000_000})


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


REGISTRY = NodeTypeRegistry(
    [_type("start", _start, inputs=()), _type("sized", _sized), _type("loud", _loud)]
)


async def _run(nodes: list[Node], limit: int) -> tuple[Any, MemoryRecorder]:
    edges = tuple(Edge(a.id, b.id) for a, b in itertools.pairwise(nodes))
    plan = compile_plan("v1", Graph(nodes=tuple(nodes), edges=edges), REGISTRY)
    recorder = MemoryRecorder()
    request = RunRequest(execution_id="e1", plan=plan, info=RunInfo(execution_id="e1"))
    outcome = await Executor(recorder).run(request, RunOptions(max_node_output_bytes=limit))
    return outcome, recorder


@pytest.mark.parametrize("extra_bytes", [0, 1])
async def test_a_node_whose_output_passes_the_limit_fails_and_nothing_of_it_is_recorded(
    extra_bytes: int,
) -> None:
    items, chars = 40, 2000
    size = len(orjson.dumps({"main": [{"s": "x" * chars}] * items}))
    nodes = [
        Node("s", "Start", "start"),
        Node("big", "Big", "sized", parameters={"items": items, "chars": chars}),
    ]
    outcome, recorder = await _run(nodes, size - extra_bytes)
    record = next(r for r in recorder.records if r.node_run and r.node_run.node_id == "big")
    finished = [r for r in recorder.records if r.node_run and r.node_run.node_id == "big"][-1]
    if extra_bytes == 0:
        assert outcome.status is ExecutionStatus.SUCCEEDED
        assert finished.payload is not None and finished.payload.raw_bytes == size
        return
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.node_runs["big"].status is NodeRunStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_OUTPUT_TOO_LARGE"
    assert outcome.error.message.startswith("node 'Big': produced more output than the limit")
    assert outcome.error.details["maxBytes"] == size - 1
    assert finished.event.type is EventType.NODE_FAILED
    assert all(r.payload is None for r in recorder.records if r.node_run is record.node_run)


@pytest.mark.parametrize("on_error", [OnError.CONTINUE, OnError.ERROR_OUTPUT])
async def test_error_items_are_bounded_and_obey_the_limit(on_error: OnError) -> None:
    nodes = [Node("s", "Start", "start"), Node("l", "Loud", "loud", on_error=on_error)]
    outcome, recorder = await _run(nodes, MIN_MAX_NODE_OUTPUT_BYTES)
    assert outcome.status is ExecutionStatus.SUCCEEDED
    failed = [r for r in recorder.records if r.event.type is EventType.NODE_FAILED][-1]
    assert failed.payload is not None
    assert failed.payload.raw_bytes <= MIN_MAX_NODE_OUTPUT_BYTES
    state = outcome.node_runs["l"]
    assert state.error is not None and state.error.type == "LOUD"
    assert state.error.message.endswith("more characters)")
    assert state.error.details["dump"]["$truncated"] is True


def test_pages_and_markers_never_exceed_the_cap() -> None:
    rng = random.Random(13)
    alphabet = 'ab"\\\u00e9\u4e2d\U0001f600\u0001'
    items = [
        {"t": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))} for _ in range(60)
    ]
    for _ in range(300):
        offset, max_bytes = rng.randint(0, 60), rng.randint(MIN_PAGE_BYTES, 20_000)
        page = page_of("main", items, offset, rng.randint(1, 60), max_bytes)
        assert len(orjson.dumps(page.items)) <= max_bytes
        if offset < len(items):
            assert page.items, "a page always moves on"
            first = page.items[0]
            if "$truncated" in first:
                whole = orjson.dumps(items[offset])
                assert first["bytes"] == len(whole) > max_bytes - 2
                assert whole.decode().startswith(first["preview"])
                assert page.truncated and page.next_offset in (offset + 1, None)
            else:
                assert first == items[offset]
