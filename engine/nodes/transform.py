"""Behaviours and descriptors of the transform node types: limit, aggregate, split_out
(Set has its module, `edit_fields`, and Sort its own, `sort`).

They read node-level settings, rendered once with the first item as `$json`. Field names are
dotted paths (`customer.email`), see `engine.nodes.paths`.
"""

from __future__ import annotations

from typing import Any

from engine.node_catalog import CORE, Catalog, ParameterHint
from engine.node_types import NodeGroup, NodeType
from engine.nodes import schema
from engine.nodes.base import Item, NodeError, NodeRunContext, PortItems
from engine.nodes.growth import Growth, json_bytes
from engine.nodes.parameters import (
    FIELD_NOT_FOUND,
    choice,
    chunks,
    flag,
    invalid_parameter,
    objects,
    settings,
    text,
    whole_number,
)
from engine.nodes.paths import MISSING, getter, set_path, split_path


async def limit(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Keeps the first or the last `maxItems` items."""
    items = inputs.get("main", [])
    parameters = settings(ctx, items)
    max_items = whole_number(parameters, "maxItems", minimum=1)
    keep = choice(parameters, "keep", ("first", "last"), default="first")
    return {"main": list(items[:max_items] if keep == "first" else items[-max_items:])}


async def aggregate(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """One item holding every item under `destinationField`, or one list per chosen field."""
    items = inputs.get("main", [])
    if not items:
        return {"main": []}
    parameters = settings(ctx, items)
    mode = choice(parameters, "mode", ("all_items", "fields"), default="all_items")
    result: Item = {}
    if mode == "all_items":
        set_path(result, text(parameters, "destinationField", default="data"), list(items))
        return {"main": [result]}
    keep_missing = flag(parameters, "keepMissing", default=False)
    outputs: set[str] = set()
    # A field collected under several names is written again each time: counted.
    growth = Growth(ctx)
    collected: set[str] = set()
    for index, entry in enumerate(objects(parameters, "fields")):
        prefix = f"fields[{index}]."
        path = text(entry, "field", prefix=prefix)
        output = text(entry, "renameTo", prefix=prefix) if entry.get("renameTo") else None
        output = output or split_path(path)[-1]
        if output in outputs:
            raise invalid_parameter(
                f"{prefix}renameTo", f"names the output field {output!r} a second time"
            )
        outputs.add(output)
        read = getter(path)
        values: list[Any] = []
        for _, chunk in chunks(items):
            for item in chunk:
                value = read(item)
                if value is MISSING or value is None:
                    if not keep_missing:
                        continue
                    value = None
                values.append(value)
            await ctx.checkpoint()
        if path in collected and growth.active:
            growth.add(json_bytes(values), 0)
        collected.add(path)
        set_path(result, output, values)
    return {"main": [result]}


def _other_fields_bytes(item: Item, path: tuple[str, ...], value: Any) -> int:
    """A lower bound of the JSON of `item` without the split field: the part each element's
    item repeats. A top-level field is left out before encoding (no second encoding of a
    large list); a nested one is subtracted."""
    if len(path) == 1:
        return json_bytes({key: entry for key, entry in item.items() if key != path[0]})
    return json_bytes(item) - json_bytes(value)


def _elements(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


async def split_out(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """One item per element of a list field, as n8n's Split Out does.

    An object element becomes the new item; any other element is put under the field's
    name. With `keepOtherFields`, every new item is a copy of the original with the element
    in place of the list. As in n8n, an object is split into its values and a single value
    into one item; an item without the field (or with null) gives no items. Unlike n8n, which
    only hints at it, a field found in no item at all is an error (`FIELD_NOT_FOUND`): that
    is almost always a misspelt name, and an empty result would hide it.
    """
    items = inputs.get("main", [])
    parameters = settings(ctx, items)
    field = text(parameters, "field")
    keep_other_fields = flag(parameters, "keepOtherFields", default=False)
    path, read = split_path(field), getter(field)
    results: list[Item] = []
    # The other fields of an item are copied into the item of each of its elements.
    growth = Growth(ctx) if keep_other_fields else None
    found = False
    for item in items:
        value = read(item)
        if value is MISSING:
            continue
        found = True
        if value is None:
            continue
        elements = _elements(value)
        if growth is not None and growth.active and len(elements) > 1:
            growth.repeat(_other_fields_bytes(item, path, value), len(elements), len(results))
        for element in elements:
            if keep_other_fields or not isinstance(element, dict):
                result = dict(item) if keep_other_fields else {}
                set_path(result, path, element)
            else:
                result = dict(element)
            results.append(result)
            if ctx.due():  # one item's list may hold a million elements
                await ctx.pause()
    if items and not found:
        raise NodeError(
            f"The field '{field}' to split out was not found in any input item",
            error_type=FIELD_NOT_FOUND,
            details={"parameter": "field", "field": field},
        )
    return {"main": results}


def limit_type() -> NodeType:
    return NodeType(
        name="limit",
        version=1,
        display_name="Limit",
        description="Passes on at most a given number of items and drops the rest.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=schema.parameters(
            {
                "maxItems": schema.number_or_expression(
                    "Max items", "How many items to keep, at least 1.", integer=True, minimum=1
                ),
                "keep": schema.choice(
                    "Keep",
                    "first: keep the first items; last: keep the last ones.",
                    ("first", "last"),
                    default="first",
                ),
            },
            required=("maxItems",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Data transformation",
            icon="fa:hand-paper",
            documentation_url="docs/api.md#node-types",
            subtitle="{keep} {maxItems}",
        ),
        execute=limit,
    )


def aggregate_type() -> NodeType:
    collected = schema.object_of(
        {
            "field": schema.text("Field", "The field whose values are collected from every item."),
            "renameTo": schema.text(
                "Output field",
                "The name of the list in the result; left out, the field's own name (its last "
                "part, for a nested field such as 'customer.email') is used.",
            ),
        },
        required=("field",),
    )
    return NodeType(
        name="aggregate",
        version=1,
        display_name="Aggregate",
        description="Combines all items into a single item holding lists.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=schema.parameters(
            {
                "mode": schema.choice(
                    "Aggregate",
                    "all_items: put every item, whole, into one list. fields: collect the "
                    "values of chosen fields into one list per field.",
                    ("all_items", "fields"),
                    default="all_items",
                ),
                "fields": schema.list_of(
                    "Fields to collect",
                    "For the fields mode: the fields whose values are gathered.",
                    collected,
                    min_items=1,
                ),
                "destinationField": schema.text(
                    "Output field",
                    "For the all_items mode: the name of the list holding the items.",
                    default="data",
                ),
                "keepMissing": schema.flag(
                    "Keep missing values",
                    "For the fields mode: put null in a list for items that lack the field or "
                    "hold null there, so that the lists of several fields stay aligned; "
                    "otherwise such items are skipped.",
                    default=False,
                ),
            },
            **schema.when("mode", "fields", ("fields",)),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Data transformation",
            icon="fa:object-group",
            documentation_url="docs/api.md#node-types",
            hints=(
                ParameterHint("mode"),
                ParameterHint("fields", show_when={"mode": ("fields",)}),
                ParameterHint("keepMissing", show_when={"mode": ("fields",)}),
                ParameterHint("destinationField", show_when={"mode": ("all_items",)}),
            ),
        ),
        execute=aggregate,
    )


def split_out_type() -> NodeType:
    return NodeType(
        name="split_out",
        version=1,
        display_name="Split Out",
        description="Turns a list inside an item into separate items, one per entry.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=schema.parameters(
            {
                "field": schema.text(
                    "Field to split",
                    "The field holding the list, e.g. 'orders'. An object element becomes the "
                    "new item; any other element is put under this field's name. Items "
                    "without the field give no items; a field found in no item is an error.",
                ),
                "keepOtherFields": schema.flag(
                    "Keep other fields",
                    "Copy the item's other fields onto each new item, with the element in "
                    "place of the list.",
                    default=False,
                ),
            },
            required=("field",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Data transformation",
            icon="fa:sign-out-alt",
            documentation_url="docs/api.md#node-types",
            subtitle="{field}",
            hints=(ParameterHint("field", placeholder="orders"),),
        ),
        execute=split_out,
    )
