"""The `merge` behaviour: two inputs, one list of items.

The executor runs a merge once every incoming edge has resolved, with a port left out when
its edge carried no data. A missing input is read as an empty one, which gives each mode a
sensible result: append passes on what arrived; an inner join or a pairing by position has
nothing to pair and emits nothing; a left join passes input 1 on unchanged; an outer join
passes on whichever side arrived; choose_branch emits nothing when its input is missing.

Combined items are `{**item1, **item2}`: on a clash of field names, input 2 wins.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from engine.nodes.base import Item, NodeRunContext, PortItems
from engine.nodes.parameters import choice, chunks, flag, settings, text
from engine.nodes.paths import MISSING, getter

MODES = ("append", "combine_by_position", "combine_by_key", "choose_branch")
JOINS = ("inner", "left", "outer")
INPUTS = ("input1", "input2")


async def merge(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Combines the items of `input1` and `input2` as the `mode` parameter says."""
    first = inputs.get("input1", [])
    second = inputs.get("input2", [])
    parameters = settings(ctx, first or second)
    mode = choice(parameters, "mode", MODES, default="append")
    if mode == "append":
        return {"main": [*first, *second]}
    if mode == "choose_branch":
        branch = choice(parameters, "branch", INPUTS, default="input1")
        return {"main": list(first if branch == "input1" else second)}
    if mode == "combine_by_position":
        unpaired = flag(parameters, "includeUnpaired", default=False)
        return {"main": await _by_position(ctx, first, second, include_unpaired=unpaired)}
    key = text(parameters, "key")
    # An emptied "key on input 2" box means the same key as input 1.
    second_key = text(parameters, "input2Key") if parameters.get("input2Key") else key
    join = choice(parameters, "join", JOINS, default="inner")
    return {"main": await _by_key(ctx, first, second, (key, second_key), join)}


async def _by_position(
    ctx: NodeRunContext, first: list[Item], second: list[Item], *, include_unpaired: bool
) -> list[Item]:
    paired = min(len(first), len(second))
    merged: list[Item] = []
    for start, chunk in chunks(first[:paired]):
        merged.extend({**item, **second[index]} for index, item in enumerate(chunk, start))
        await ctx.checkpoint()
    if include_unpaired:
        merged.extend(first[paired:] or second[paired:])
    return merged


def _join_key(value: Any) -> Hashable | None:
    """A hashable form of a key value in which only equal JSON values meet.

    1 and 1.0 match; true and 1, or 1 and "1", do not. Null, a missing field and NaN
    never match anything, as in SQL.
    """
    if value is None or value is MISSING:
        return None
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int | float):
        return None if value != value else ("number", value)
    if isinstance(value, str):
        return ("text", value)
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


async def _by_key(
    ctx: NodeRunContext,
    first: list[Item],
    second: list[Item],
    keys: tuple[str, str],
    join: str,
) -> list[Item]:
    read_first, read_second = getter(keys[0]), getter(keys[1])
    index: dict[Hashable, list[int]] = {}
    for start, chunk in chunks(second):
        for position, item in enumerate(chunk, start):
            key = _join_key(read_second(item))
            if key is not None:
                index.setdefault(key, []).append(position)
        await ctx.checkpoint()
    matched = bytearray(len(second))
    merged: list[Item] = []
    for _, chunk in chunks(first):
        for item in chunk:
            key = _join_key(read_first(item))
            positions = index.get(key, ()) if key is not None else ()
            for position in positions:
                merged.append({**item, **second[position]})
                matched[position] = 1
            if not positions and join != "inner":
                merged.append(item)
        await ctx.checkpoint()
    if join == "outer":
        merged.extend(item for position, item in enumerate(second) if not matched[position])
    return merged
