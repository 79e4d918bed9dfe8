"""The `merge` behaviour: two inputs, one list of items.

The executor runs a merge once every incoming edge has resolved, with a port left out when
its edge carried no data. A missing input is read as an empty one, which gives each mode a
sensible result: append passes on what arrived; an inner join or a pairing by position has
nothing to pair and emits nothing; a left join passes input 1 on unchanged; an outer join
passes on whichever side arrived; choose_branch emits nothing when its input is missing.

Combined items are `{**item1, **item2}`: on a clash of field names, input 2 wins.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Hashable
from typing import Any

import orjson

from engine.node_catalog import CORE, Catalog, ParameterHint
from engine.node_types import NodeGroup, NodeType, Port
from engine.nodes import schema
from engine.nodes.base import Item, NodeRunContext, PortItems
from engine.nodes.growth import Growth, KeyTexts, json_bytes
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


def _join_key(value: Any, texts: KeyTexts) -> Hashable | None:
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
    return ("json", texts(value))


async def _by_key(
    ctx: NodeRunContext,
    first: list[Item],
    second: list[Item],
    keys: tuple[str, str],
    join: str,
) -> list[Item]:
    read_first, read_second = getter(keys[0]), getter(keys[1])
    index: dict[Hashable, list[int]] = {}
    texts = KeyTexts()
    for position, item in enumerate(second):
        key = _join_key(read_second(item), texts)
        if key is not None:
            index.setdefault(key, []).append(position)
        if ctx.due():  # a key that is a list or object is keyed by its JSON text
            await ctx.pause()
    matched = bytearray(len(second))
    merged: list[Item] = []
    # An item joined to several, or joined again, is written once more each time: counted
    # (`_merged_bytes`, a lower bound of the combined item).
    growth = Growth(ctx)
    sizes: dict[int, int] = {}  # of the second input's items, by position

    def second_size(position: int) -> int:
        size = sizes.get(position)
        if size is None:
            size = sizes[position] = json_bytes(second[position])
        return size

    for item in first:
        key = _join_key(read_first(item), texts)
        positions = index.get(key, ()) if key is not None else ()
        first_size = -1
        for count, position in enumerate(positions):
            if growth.active and (count or matched[position]):
                if first_size < 0:
                    first_size = json_bytes(item)
                other = second[position]
                growth.add(
                    _merged_bytes(item, first_size, other, second_size(position)), len(merged)
                )
            merged.append({**item, **second[position]})
            matched[position] = 1
            if ctx.due():  # one key may join an item to a million others
                await ctx.pause()
        if not positions and join != "inner":
            merged.append(item)
        if ctx.due():
            await ctx.pause()
    if join == "outer":
        merged.extend(itertools.compress(second, map(operator.not_, matched)))
    return merged


def merge_type() -> NodeType:
    return NodeType(
        name="merge",
        version=1,
        display_name="Merge",
        description="Waits for both inputs and combines their items into one list.",
        group=NodeGroup.FLOW,
        inputs=(
            Port("input1", "Input 1", accepts_many=False),
            Port("input2", "Input 2", accepts_many=False),
        ),
        parameters_schema=schema.parameters(
            {
                "mode": schema.choice(
                    "Mode",
                    "append: items of input 1, then items of input 2. combine_by_position: "
                    "the first items of both inputs become one item, then the second ones, and "
                    "so on. combine_by_key: items whose key fields hold the same value become "
                    "one item; Join says what happens to items without a match. choose_branch: "
                    "pass on the items of one input once both have arrived. Combined items "
                    "take input 2's value where both inputs have a field.",
                    ("append", "combine_by_position", "combine_by_key", "choose_branch"),
                    default="append",
                ),
                "key": schema.text(
                    "Key field",
                    "For combine_by_key: the field whose value must match on both inputs, "
                    "for example 'id' or 'customer.email'. Values match only if equal as JSON "
                    '(1 matches 1.0 but not "1"); items without a value never match.',
                ),
                "input2Key": schema.text(
                    "Key field on input 2",
                    "For combine_by_key: the key field of input 2's items when it is named "
                    "differently from input 1's; left out, Key field is used on both.",
                ),
                "join": schema.choice(
                    "Join",
                    "For combine_by_key: inner keeps only items that found a match; left also "
                    "passes on input 1 items without a match, unchanged; outer passes on the "
                    "unmatched items of both inputs, input 2's after all others.",
                    ("inner", "left", "outer"),
                    default="inner",
                ),
                "includeUnpaired": schema.flag(
                    "Include unpaired items",
                    "For combine_by_position: when one input has more items, pass the extra "
                    "ones on unchanged instead of dropping them.",
                    default=False,
                ),
                "branch": schema.choice(
                    "Branch",
                    "For choose_branch: the input whose items are passed on.",
                    ("input1", "input2"),
                    default="input1",
                ),
            },
            **schema.when("mode", "combine_by_key", ("key",)),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Flow",
            icon="fa:code-branch",
            documentation_url="docs/api.md#node-types",
            subtitle="{mode}",
            hints=(
                ParameterHint("mode"),
                ParameterHint("key", placeholder="id", show_when={"mode": ("combine_by_key",)}),
                ParameterHint("input2Key", show_when={"mode": ("combine_by_key",)}),
                ParameterHint("join", show_when={"mode": ("combine_by_key",)}),
                ParameterHint("includeUnpaired", show_when={"mode": ("combine_by_position",)}),
                ParameterHint("branch", show_when={"mode": ("choose_branch",)}),
            ),
        ),
        execute=merge,
    )


def _merged_bytes(first: Item, first_size: int, second: Item, second_size: int) -> int:
    """A lower bound of the JSON size of `{**first, **second}`, given each one's size: both
    whole when they share no field; else the larger of `second` and `first` less its entries
    that `second` replaces."""
    shared = first.keys() & second.keys()
    if not shared:
        return first_size + second_size - 1  # `}{` becomes `,`
    replaced = sum(len(orjson.dumps({key: first[key]})) - 1 for key in shared)  # with a comma
    return max(second_size, first_size - replaced)
