"""Built-ins that loop over every item share the event loop, and stop on time.

Merge and Sort over hundreds of thousands of items, or over items whose keys are large
objects (ranked and matched by their JSON text), give the loop a turn within a slice
(`ctx.due()`): the loop is never held for more than a few milliseconds, and a timeout or a
cancellation stops them within a quarter of a second.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from engine.nodes.base import PortItems
from tests.engine.node_runner import BUILTINS, context, longest_hold_s

# Keys that are large objects: ranking or keying an item by one encodes it as JSON. Each
# item's key is an object of its own (a key shared by reference is encoded once).
LARGE_VALUES = list(range(3000))


def large_key(index: int) -> dict[str, Any]:
    return {"values": LARGE_VALUES, "i": index % 7}


# Inputs are built when a test runs: a module holding them all would make every collection
# of the garbage collector walk them, which holds the loop in any test.
CASES: dict[str, Callable[[], tuple[str, dict[str, Any], PortItems]]] = {
    "sort, many items": lambda: (
        "sort",
        {"fields": [{"field": "n"}]},
        {"main": [{"n": (index * 7919) % 1000} for index in range(300_000)]},
    ),
    "sort by an object": lambda: (
        "sort",
        {"fields": [{"field": "key"}]},
        {"main": [{"key": large_key(index), "n": index} for index in range(3000)]},
    ),
    "merge by position, many items": lambda: (
        "merge",
        {"mode": "combine_by_position"},
        {
            "input1": [{"a": index} for index in range(300_000)],
            "input2": [{"b": index} for index in range(300_000)],
        },
    ),
    "merge by key, every item with every other": lambda: (
        "merge",
        {"mode": "combine_by_key", "key": "k"},
        {
            "input1": [{"k": 1, "a": index} for index in range(600)],
            "input2": [{"k": 1, "b": index} for index in range(600)],
        },
    ),
    "merge by an object key": lambda: (
        "merge",
        {"mode": "combine_by_key", "key": "key", "join": "outer"},
        {
            "input1": [{"key": large_key(index), "a": index} for index in range(10)],
            "input2": [{"key": large_key(index), "b": index} for index in range(3000)],
        },
    ),
}


@contextmanager
def prepared(case: str) -> Iterator[Coroutine[Any, Any, PortItems]]:
    """The case's behaviour, ready to run on its inputs.

    The inputs are set aside from the garbage collector, as a long-lived process's are (and
    Loom's processes tune it: LOOM_GC_THRESHOLD): a full collection over a million young
    objects holds the loop for a tenth of a second, whatever code it interrupts.
    """
    type_name, parameters, inputs = CASES[case]()
    gc.collect()
    gc.freeze()
    try:
        # The behaviour alone: `run_node`'s deep copy of the input would hold the loop too.
        yield BUILTINS[type_name].execute(context(type_name, parameters, inputs), inputs)
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("case", CASES)
async def test_item_loops_hold_the_event_loop_a_few_ms_at_a_time(case: str) -> None:
    with prepared(case) as running:
        outputs, held_s = await longest_hold_s(running)
    assert outputs["main"]
    assert held_s < 0.05, f"the loop was held for {held_s * 1000:.0f} ms"


@pytest.mark.parametrize("case", CASES)
async def test_item_loops_stop_within_a_quarter_second_of_their_timeout(case: str) -> None:
    loop = asyncio.get_running_loop()
    with prepared(case) as running, pytest.raises(TimeoutError):
        deadline = loop.time() + 0.05
        async with asyncio.timeout_at(deadline):
            await running
    assert loop.time() - deadline < 0.25, f"{loop.time() - deadline:.2f} s late"
