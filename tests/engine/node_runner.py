"""Running one built-in node behaviour on given items, as the executor would."""

from __future__ import annotations

import copy
from collections.abc import Awaitable
from typing import Any, TypeVar

from engine.graph import Node
from engine.nodes.base import Item, NodeRunContext, PortItems
from engine.nodes.builtin import node_types
from tests.event_loop import longest_hold

# Version 1 of each (Set has a version 2: tests/engine/test_set_v2.py).
BUILTINS = {node_type.name: node_type for node_type in node_types() if node_type.version == 1}

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
    """Await `operation` while the event loop is measured: its result, and the longest time
    the loop went without giving a ready task its turn (held by the operation)."""
    async with longest_hold() as hold:
        result = await operation
    return result, hold.longest_s
