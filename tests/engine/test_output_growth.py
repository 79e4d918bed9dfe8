"""Behaviours that write one value into many places are refused as they build, not after.

A Set node writing `{{ $json.big }}` into many fields, or a large constant into every item,
Split Out copying an item's other fields into each element's item, and Merge joining one item
to many hold every copy by reference: little memory, until the output is encoded. Past the
output limit they fail with NODE_OUTPUT_TOO_LARGE while building it (engine/nodes/growth.py),
with Python's allocations staying far below the size of the output that was asked for.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from engine.executor import Executor, RunOptions, RunRequest
from engine.graph import Graph, Node
from engine.memory_recorder import MemoryRecorder
from engine.nodes.base import NodeError, PortItems, RunInfo
from engine.nodes.parameters import shown
from engine.outputs import serialize_outputs
from engine.plan import compile_plan
from engine.states import ExecutionStatus
from tests.engine.node_runner import BUILTINS, context, run_node

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


async def refused(
    type_name: str, parameters: dict[str, Any], inputs: PortItems, limit: int
) -> NodeError:
    """The behaviour's NODE_OUTPUT_TOO_LARGE under `limit`, with its inputs as they were."""
    ctx = context(type_name, parameters, inputs)
    ctx.max_output_bytes = limit
    with pytest.raises(NodeError) as caught:
        await BUILTINS[type_name].execute(ctx, inputs)
    assert caught.value.error_type == "NODE_OUTPUT_TOO_LARGE", caught.value.message
    assert caught.value.details["maxBytes"] == limit
    assert caught.value.details["bytes"] > limit
    return caught.value


async def test_a_value_written_into_many_fields_is_refused_within_the_first_item() -> None:
    fields = [{"name": f"f{n}", "value": "{{ $json.big }}"} for n in range(1000)]
    item = {"big": "x" * 100_000}  # 100 MB of JSON asked for, in one item
    with peak_mb() as peak:
        error = await refused("set", {"fields": fields}, {"main": [item]}, MB)
    assert peak[0] < 4, f"{peak[0]:.1f} MB"
    assert error.message.endswith("past it with output 'main' item 0")


async def test_the_whole_input_written_into_every_item_is_refused_by_its_count() -> None:
    items = [{"n": n, "text": "t" * 1000} for n in range(2000)]  # 2 MB of input
    parameters = {"fields": [{"name": "all", "value": "{{ $input.all() }}"}]}
    with peak_mb() as peak:
        error = await refused("set", parameters, {"main": items}, 8 * MB)
    # About 2 MB per item: the fifth passes 8 MB (4 GB of JSON were asked for).
    assert error.message.endswith("past it with output 'main' item 4"), error.message
    assert peak[0] < 40, f"{peak[0]:.1f} MB"


async def test_a_constant_written_into_every_item_is_refused_before_any_is_built() -> None:
    constant = {"text": "c" * 100_000}
    items = [{"n": n} for n in range(100_000)]  # 10 GB of JSON asked for
    parameters = {"fields": [{"name": "c", "value": constant}]}
    with peak_mb() as peak:
        error = await refused("set", parameters, {"main": items}, MB)
    assert peak[0] < 2, f"{peak[0]:.1f} MB"
    assert error.message.endswith("past it with output 'main' item 10"), error.message


async def test_fields_written_twice_count_once() -> None:
    # The last value written to a field is the one in the item: counting both would refuse
    # an output under the limit.
    big = "b" * 40_000
    fields = [{"name": "a", "value": big}, {"name": "a", "value": "small"}]
    ctx = context("set", {"fields": fields}, {"main": [{}]})
    ctx.max_output_bytes = 64 * 1024
    outputs = await BUILTINS["set"].execute(ctx, {"main": [{"n": n} for n in range(100)]})
    assert outputs["main"][0] == {"n": 0, "a": "small"}


async def test_split_out_copying_large_other_fields_is_refused_as_it_splits() -> None:
    item = {"profile": "p" * 100_000, "rows": ["r"] * 100_000}  # 10 GB of JSON asked for
    parameters = {"field": "rows", "keepOtherFields": True}
    with peak_mb() as peak:
        error = await refused("split_out", parameters, {"main": [item]}, MB)
    # Counting the item encodes it once: orjson reserves about 160 bytes an element for a
    # long list before it shrinks its result (allocated, never touched: not in the RSS).
    assert peak[0] < 24, f"{peak[0]:.1f} MB"
    assert error.message.endswith("past it with output 'main' item 10"), error.message


async def test_a_join_of_every_item_with_every_other_is_refused_as_it_joins() -> None:
    first = [{"k": 1, "a": "a" * 1000, "n": n} for n in range(2000)]
    second = [{"k": 1, "b": "b" * 1000, "m": n} for n in range(2000)]  # 4 million items asked
    parameters = {"mode": "combine_by_key", "key": "k"}
    with peak_mb() as peak:
        error = await refused("merge", parameters, {"input1": first, "input2": second}, 4 * MB)
    assert peak[0] < 16, f"{peak[0]:.1f} MB"
    assert "past it with output 'main' item" in error.message


@pytest.mark.parametrize(
    ("type_name", "parameters", "inputs"),
    [
        ("set", {"fields": [{"name": "b", "value": "{{ $json.a }}"}]}, {"main": [{"a": "x"}]}),
        ("set", {"fields": [{"name": "c", "value": [1, 2]}]}, {"main": [{"a": 1}] * 50}),
        ("split_out", {"field": "l", "keepOtherFields": True}, {"main": [{"o": 1, "l": [1, 2]}]}),
        (
            "merge",
            {"mode": "combine_by_key", "key": "k"},
            {"input1": [{"k": 1}, {"k": 1}], "input2": [{"k": 1, "v": 2}, {"k": 1, "v": 3}]},
        ),
    ],
)
async def test_outputs_under_the_limit_are_built_whole(
    type_name: str, parameters: dict[str, Any], inputs: PortItems
) -> None:
    ctx = context(type_name, parameters, inputs)
    ctx.max_output_bytes = 64 * 1024
    outputs = await BUILTINS[type_name].execute(ctx, inputs)
    unlimited = await run_node(type_name, parameters, **inputs)
    assert outputs == unlimited
    assert serialize_outputs(outputs, 64 * 1024).raw_bytes < 64 * 1024


async def test_a_parameter_holding_a_large_value_is_described_in_its_error() -> None:
    # 100 MB of JSON, 100 KB of memory: its error says what it is, and builds none of it.
    item = {"big": ["s" * 100_000] * 1000}
    with peak_mb() as peak, pytest.raises(NodeError) as caught:
        await run_node("limit", {"maxItems": "{{ $json.big }}"}, [item])
    assert peak[0] < 2, f"{peak[0]:.1f} MB"
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert caught.value.message == (
        "Parameter 'maxItems' must be a whole number of at least 1, got a list of 1,000 elements"
    )


def test_small_values_are_still_shown_as_json() -> None:
    assert shown([1, "two", {"three": 3}]) == '[1, "two", {"three": 3}]'
    assert shown({"k": "v" * 100}) == '{"k": "' + "v" * 50 + "..."
    assert shown("s" * 1_000_000) == '"' + "s" * 56 + "..."


async def test_a_trigger_passing_on_an_input_past_the_limit_fails() -> None:
    registry = BUILTINS
    nodes = (Node(id="start", name="Start", type="manual_trigger"),)
    from engine.node_types import NodeTypeRegistry

    plan = compile_plan("v1", Graph(nodes=nodes, edges=()), NodeTypeRegistry(registry.values()))
    item = {"text": "i" * 100_000}
    request = RunRequest(
        execution_id="e1",
        plan=plan,
        info=RunInfo(execution_id="e1"),
        input=item,
        input_bytes=100_011,
    )
    outcome = await Executor(MemoryRecorder()).run(
        request, RunOptions(max_node_output_bytes=64 * 1024)
    )
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_OUTPUT_TOO_LARGE"


@pytest.mark.parametrize(
    ("type_name", "parameters", "ports"),
    [
        ("sort", {"fields": [{"field": "key"}]}, ("main",)),
        ("merge", {"mode": "combine_by_key", "key": "key", "join": "left"}, ("input1", "input2")),
    ],
)
async def test_items_sharing_a_large_key_share_its_text(
    type_name: str, parameters: dict[str, Any], ports: tuple[str, ...]
) -> None:
    # Sort and Merge rank and match lists and objects by their JSON text: 2,000 items
    # sharing a 100 KB key by reference made 200 MB of texts.
    key = {"values": ["k" * 100] * 1000}
    inputs: PortItems = {ports[0]: [{"key": key, "n": n} for n in range(2000)]}
    if len(ports) > 1:
        inputs[ports[1]] = [{"key": {"values": ["other"]}}]
    ctx = context(type_name, parameters, inputs)
    with peak_mb() as peak:
        outputs = await BUILTINS[type_name].execute(ctx, inputs)
    assert len(outputs["main"]) == 2000
    assert peak[0] < 8, f"{peak[0]:.1f} MB"


async def test_a_value_written_under_many_nested_fields_counts_each_time() -> None:
    # `a.f0` ... `a.f99` sit side by side under `a`: each holds the whole value.
    fields = [{"name": f"a.f{n}", "value": "{{ $json.big }}"} for n in range(100)]
    item = {"big": "x" * 10_000}
    error = await refused("set", {"fields": fields}, {"main": [item]}, 64 * 1024)
    assert error.message.endswith("past it with output 'main' item 0")


async def test_writes_replaced_or_written_into_later_are_not_counted() -> None:
    big = "b" * 50_000
    fields = [
        {"name": "a", "value": big},
        {"name": "a", "value": "small"},  # replaces it
        {"name": "c", "value": {"inner": big}},
        {"name": "c.inner", "value": "small"},  # writes into it
        {"name": "d.e", "value": big},
        {"name": "d", "value": 1},  # replaces its parent
    ]
    ctx = context("set", {"fields": fields}, {"main": [{}]})
    ctx.max_output_bytes = 64 * 1024
    outputs = await BUILTINS["set"].execute(ctx, {"main": [{"n": 1}]})
    assert outputs["main"] == [{"n": 1, "a": "small", "c": {"inner": "small"}, "d": 1}]


async def test_a_join_whose_second_items_replace_a_large_field_is_not_refused() -> None:
    # Input 2 overwrites the large field: the joined items are small.
    first = [{"id": 1, "payload": "x" * 2000}]
    second = [{"id": 1, "payload": ""} for _ in range(100)]
    parameters = {"mode": "combine_by_key", "key": "id"}
    ctx = context("merge", parameters, {"input1": first, "input2": second})
    ctx.max_output_bytes = 64 * 1024
    outputs = await BUILTINS["merge"].execute(ctx, {"input1": first, "input2": second})
    assert outputs["main"] == [{"id": 1, "payload": ""}] * 100


async def test_a_field_aggregated_under_many_names_is_refused() -> None:
    items = [{"big": "g" * 4000} for _ in range(10)]  # 40 KB collected each time
    fields = [{"field": "big", "renameTo": f"copy{n}"} for n in range(30)]
    with peak_mb() as peak:
        error = await refused(
            "aggregate", {"mode": "fields", "fields": fields}, {"main": items}, MB
        )
    assert peak[0] < 4, f"{peak[0]:.1f} MB"
    assert error.message.endswith("past it with output 'main' item 0")
