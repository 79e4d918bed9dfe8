"""Running one built-in node behaviour on given items, as the executor would."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from engine.graph import Node
from engine.nodes.base import Item, NodeRunContext, PortItems
from engine.nodes.builtin import node_types

BUILTINS = {node_type.name: node_type for node_type in node_types()}

T = TypeVar("T")


class RecordingContext(NodeRunContext):
    """A context whose `sleep` records the delay instead of waiting."""

    slept: list[float]

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def context(
    type_name: str, parameters: dict[str, Any], inputs: PortItems, *, recording: bool = False
) -> NodeRunContext:
    node = Node(id="n", name="Node", type=type_name, parameters=parameters)
    main_input = inputs.get("main") or next(iter(inputs.values()), [])
    if recording:
        recorder = RecordingContext.for_node(node, main_input=main_input)
        recorder.slept = []
        return recorder
    return NodeRunContext.for_node(node, main_input=main_input)


async def run_node(
    type_name: str,
    parameters: dict[str, Any],
    items: list[Item] | None = None,
    *,
    ctx: NodeRunContext | None = None,
    **ports: list[Item],
) -> PortItems:
    """Run the type's behaviour on `items` (port `main`) and/or named ports.

    Also checks that the behaviour left its input items exactly as they were.
    """
    inputs: PortItems = {**({"main": items} if items is not None else {}), **ports}
    before = copy.deepcopy(inputs)
    behaviour = BUILTINS[type_name].execute
    outputs: PortItems = await behaviour(ctx or context(type_name, parameters, inputs), inputs)
    assert inputs == before, "the behaviour changed its input items"
    return outputs


def main(outputs: PortItems) -> list[Item]:
    return outputs.get("main", [])


async def longest_hold_s(operation: Awaitable[T]) -> tuple[T, float]:
    """Await `operation` while a ticker task measures the event loop: its result, and the
    longest time the loop went without running the ticker (held by the operation)."""
    longest = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        result = await operation
    finally:
        stop.set()
        await task
    return result, longest
