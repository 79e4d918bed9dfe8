"""The shape of a list of items: which fields they have, of which JSON types, how often.

The editor offers it for autocomplete and drag-and-drop mapping. It is inferred from a
bounded sample (the first `MAX_SAMPLED_ITEMS` items, within `MAX_SAMPLED_BYTES` of JSON: a
run's output is read no further, however many items it has, and an item larger than that is
not looked into) and bounded itself: at most `MAX_PATHS` paths, `MAX_DEPTH` levels,
the first `MAX_ARRAY_ELEMENTS` elements of each array, examples of `MAX_EXAMPLE_CHARS`. Past
any bound, what is left out is left out and `truncated` says so.

Paths are written as in expressions after `$json`: `customer.name`, `["first name"]` for a
key that is not a name, and `[]` for the elements of an array (`orders[].id`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from engine.output_pages import MIN_PAGE_BYTES, Page
from engine.truncation import TRUNCATED_KEY

MAX_SAMPLED_ITEMS = 1_000
MAX_SAMPLED_BYTES = 4 * 1024 * 1024
MAX_PATHS = 500
MAX_DEPTH = 12
MAX_ARRAY_ELEMENTS = 20
MAX_EXAMPLE_CHARS = 200

_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
# JSON type names, in the order a field lists them.
TYPE_ORDER = ("string", "number", "boolean", "null", "object", "array")


@dataclass(slots=True)
class FieldShape:
    """One path: the JSON types seen there, one example, and how many items have it."""

    path: str
    types: set[str] = field(default_factory=set)
    example: Any = None
    has_example: bool = False
    items: int = 0
    # The last item counted, so that an array's elements count their item once.
    last_item: int = -1


@dataclass(frozen=True, slots=True)
class Shape:
    """The fields of a sample of items, in the order they were first met."""

    fields: list[FieldShape]
    sampled_items: int
    truncated: bool


class PagedOutput(Protocol):
    """Stored output items, read a page at a time (storage/output_reads.py)."""

    def items_bytes(self, port: str | None = None) -> int: ...

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page: ...


async def sample_items(
    output: PagedOutput, port: str, count: int, max_items: int, max_bytes: int
) -> list[Any]:
    """The first items of a port with `count` items, at most `max_items` and `max_bytes` of
    JSON: one page. A port whose one item is larger than that is not read at all (a page
    would return its truncation marker, with a preview as large as the room)."""
    if count <= 0 or max_items <= 0 or max_bytes < MIN_PAGE_BYTES:
        return []
    if count == 1 and output.items_bytes(port) - 2 > max_bytes:
        return [{TRUNCATED_KEY: True}]
    page = await output.page(port, 0, max_items, max_bytes)
    return page.items


def infer_shape(items: Iterable[Any], max_items: int = MAX_SAMPLED_ITEMS) -> Shape:
    """The shape of the first `max_items` of `items` (JSON objects; other values are
    counted as items with no fields). A truncation marker (an item too large for the
    sample, `engine.truncation`) is left out, and the shape is `truncated`."""
    walker = _Walker()
    sampled = 0
    for item in items:
        if sampled >= max_items:
            walker.truncated = True
            break
        if isinstance(item, dict) and item.get(TRUNCATED_KEY) is True:
            walker.truncated = True
            continue
        if isinstance(item, dict):
            walker.walk_object(item, "", 0, sampled)
        sampled += 1
    return Shape(list(walker.fields.values()), sampled, walker.truncated)


class _Walker:
    """One pass over the sample. Written for speed (it visits every value of up to a
    thousand items per shape): child paths are built once per (parent, key), types looked
    up by Python type, and the common case, a scalar under a known path, is a few
    dictionary operations."""

    __slots__ = ("child_paths", "fields", "truncated")

    def __init__(self) -> None:
        self.fields: dict[str, FieldShape] = {}
        self.child_paths: dict[tuple[str, str], str] = {}
        self.truncated = False

    def walk_object(self, value: dict[str, Any], prefix: str, depth: int, item: int) -> None:
        if depth >= MAX_DEPTH:
            self.truncated = True
            return
        child_paths, fields = self.child_paths, self.fields
        for key, child in value.items():
            path = child_paths.get((prefix, key))
            if path is None:
                path = child_paths[(prefix, key)] = _child_path(prefix, key)
            shape = fields.get(path)
            kind = _SCALARS.get(type(child))
            if shape is None or kind is None or shape.last_item == item:
                self.walk(child, path, depth + 1, item)
                continue
            # The common case, inlined: a scalar under a path met before, first in this item.
            shape.last_item = item
            shape.items += 1
            shape.types.add(kind)
            if not shape.has_example and kind != "null":
                shape.example = _example(child)
                shape.has_example = True

    def walk(self, value: Any, path: str, depth: int, item: int) -> None:
        shape = self.fields.get(path)
        if shape is None:
            if len(self.fields) >= MAX_PATHS:
                self.truncated = True
                return
            shape = self.fields[path] = FieldShape(path)
        if shape.last_item != item:
            shape.last_item = item
            shape.items += 1
        kind = _KINDS.get(type(value)) or type_of(value)
        shape.types.add(kind)
        if kind == "object":
            self.walk_object(value, path, depth, item)
        elif kind == "array":
            if len(value) > MAX_ARRAY_ELEMENTS:
                self.truncated = True
            if depth >= MAX_DEPTH:
                self.truncated = self.truncated or bool(value)
                return
            element_path = path + "[]"
            for element in value[:MAX_ARRAY_ELEMENTS]:
                self.walk(element, element_path, depth + 1, item)
        elif not shape.has_example and kind != "null":
            shape.example = _example(value)
            shape.has_example = True


# The JSON type of each Python type that decoded JSON holds (`type_of` for subclasses).
_SCALARS: dict[type, str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_KINDS: dict[type, str] = {**_SCALARS, dict: "object", list: "array"}


def type_of(value: Any) -> str:
    """The JSON type of a decoded JSON value."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return "array"


def ordered_types(types: set[str]) -> list[str]:
    return [kind for kind in TYPE_ORDER if kind in types]


def _child_path(prefix: str, key: str) -> str:
    if _NAME.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{orjson.dumps(key).decode()}]"


def _example(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_EXAMPLE_CHARS:
        return value[:MAX_EXAMPLE_CHARS] + "…"
    return value
