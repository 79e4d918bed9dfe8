"""The Sort node: items in order by one or more fields, stable, sorted in slices.

Any two JSON values compare (numbers, then text, booleans, lists and objects by their JSON
text; null, missing and NaN last in either direction), and a million items are sorted in runs
merged lazily, giving the event loop turns in between.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from typing import Any

from engine.node_catalog import CORE, Catalog, ParameterHint
from engine.node_types import NodeGroup, NodeType
from engine.nodes import schema
from engine.nodes.base import CHECKPOINT_EVERY, Item, NodeRunContext, PortItems
from engine.nodes.growth import KeyTexts
from engine.nodes.parameters import choice, objects, settings, text
from engine.nodes.paths import getter

# Items sorted by one `list.sort` call: about 10 ms of the event loop at most.
SORT_RUN_ITEMS = 10_000


def _sort_rank(value: Any, descending: bool, texts: KeyTexts) -> tuple[int, Any]:
    """A key under which any two JSON values compare, never raising TypeError.

    Numbers come first, then text, booleans, lists and objects (the last two by their JSON
    text); null, a missing field and NaN come last in either direction.
    """
    kind = type(value)
    if kind is int or kind is float:
        if value == value:
            return (0, value)
    elif kind is str:
        return (1, value)
    elif kind is bool:
        return (2, value)
    elif kind is list or kind is dict:
        return (3 if kind is list else 4, texts(value))
    return (-1, 0) if descending else (5, 0)


async def sort(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Orders items by one or more fields, each ascending or descending; stable."""
    items = inputs.get("main", [])
    parameters = settings(ctx, items)
    keys = [
        (
            getter(text(entry, "field", prefix=f"fields[{index}].")),
            choice(entry, "order", ("asc", "desc"), default="asc", prefix=f"fields[{index}].")
            == "desc",
        )
        for index, entry in enumerate(objects(parameters, "fields"))
    ]
    order: Sequence[int] = range(len(items))
    # One stable pass per field, least significant first (a reversed sort stays stable).
    for read, descending in reversed(keys):
        ranks: list[tuple[int, Any]] = []
        texts = KeyTexts()
        for item in items:
            ranks.append(_sort_rank(read(item), descending, texts))
            if ctx.due():  # a list or object is ranked by its JSON text: any length
                await ctx.pause()
        order = await _sorted_in_slices(ctx, order, ranks, descending)
    result: list[Item] = []
    for start in range(0, len(order), SORT_RUN_ITEMS):
        result.extend(map(items.__getitem__, order[start : start + SORT_RUN_ITEMS]))
        await ctx.checkpoint()
    return {"main": result}


async def _sorted_in_slices(
    ctx: NodeRunContext, order: Sequence[int], ranks: list[tuple[int, Any]], descending: bool
) -> list[int]:
    """`order` sorted (stably) by `ranks`, giving the event loop turns in between.

    One `list.sort` of a million items holds the loop for most of a second and cannot be
    interrupted: runs of `SORT_RUN_ITEMS` are sorted one at a time, then merged lazily
    (`heapq.merge` is stable: on ties, the earlier run's item comes first).
    """
    if len(order) <= SORT_RUN_ITEMS:
        return sorted(order, key=ranks.__getitem__, reverse=descending)
    runs = []
    for start in range(0, len(order), SORT_RUN_ITEMS):
        runs.append(
            sorted(order[start : start + SORT_RUN_ITEMS], key=ranks.__getitem__, reverse=descending)
        )
        await ctx.checkpoint()
    merged: list[int] = []
    pending = heapq.merge(*runs, key=ranks.__getitem__, reverse=descending)
    while chunk := list(itertools.islice(pending, CHECKPOINT_EVERY)):
        merged.extend(chunk)
        await ctx.checkpoint()
    return merged


def sort_type() -> NodeType:
    sort_key = schema.object_of(
        {
            "field": schema.text("Field", "The field to sort by, for example 'createdAt'."),
            "order": schema.choice(
                "Order",
                "asc: smallest or earliest first; desc: largest or latest first.",
                ("asc", "desc"),
                default="asc",
            ),
        },
        required=("field",),
    )
    return NodeType(
        name="sort",
        version=1,
        display_name="Sort",
        description="Puts the items in order by one or more fields.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=schema.parameters(
            {
                "fields": schema.list_of(
                    "Sort by",
                    "The fields to sort by; later fields break ties of earlier ones.",
                    sort_key,
                    min_items=1,
                ),
            },
            required=("fields",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Data transformation",
            icon="fa:sort-amount-down",
            documentation_url="docs/api.md#node-types",
            hints=(ParameterHint("fields[].field", placeholder="createdAt"),),
        ),
        execute=sort,
    )
