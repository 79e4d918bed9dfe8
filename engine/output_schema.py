"""The shape of a list of items: which fields they have, of which JSON types, how often.

The editor offers it for autocomplete and drag-and-drop mapping. It is inferred from a
bounded sample (the first `MAX_SAMPLED_ITEMS` items: a run's output is read no further,
however many items it has) and bounded itself: at most `MAX_PATHS` paths, `MAX_DEPTH` levels,
the first `MAX_ARRAY_ELEMENTS` elements of each array, examples of `MAX_EXAMPLE_CHARS`. Past
any bound, what is left out is left out and `truncated` says so.

Paths are written as in expressions after `$json`: `customer.name`, `["first name"]` for a
key that is not a name, and `[]` for the elements of an array (`orders[].id`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_SAMPLED_ITEMS = 1_000
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


def infer_shape(items: Iterable[Any], max_items: int = MAX_SAMPLED_ITEMS) -> Shape:
    """The shape of the first `max_items` of `items` (JSON objects; other values are
    counted as items with no fields)."""
    walker = _Walker()
    sampled = 0
    for item in items:
        if sampled >= max_items:
            walker.truncated = True
            break
        if isinstance(item, dict):
            walker.walk_object(item, "", 0, sampled)
        sampled += 1
    return Shape(list(walker.fields.values()), sampled, walker.truncated)


class _Walker:
    __slots__ = ("fields", "truncated")

    def __init__(self) -> None:
        self.fields: dict[str, FieldShape] = {}
        self.truncated = False

    def walk_object(self, value: dict[str, Any], prefix: str, depth: int, item: int) -> None:
        if depth >= MAX_DEPTH:
            self.truncated = True
            return
        for key, child in value.items():
            self.walk(child, _child_path(prefix, key), depth + 1, item)

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
        kind = type_of(value)
        shape.types.add(kind)
        if not shape.has_example and kind not in ("null", "object", "array"):
            shape.example = _example(value)
            shape.has_example = True
        if kind == "object":
            self.walk_object(value, path, depth, item)
        elif kind == "array":
            if len(value) > MAX_ARRAY_ELEMENTS:
                self.truncated = True
            if depth >= MAX_DEPTH:
                self.truncated = self.truncated or bool(value)
                return
            for element in value[:MAX_ARRAY_ELEMENTS]:
                self.walk(element, path + "[]", depth + 1, item)


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
