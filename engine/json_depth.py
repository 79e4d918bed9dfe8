"""The JSON nesting limit: how deeply arrays and objects may nest in data Loom takes in (pure).

Without a bound, nested data fails wherever it is first encoded or decoded: Python's `json`
recurses once per level (RecursionError near 1,000 levels), orjson refuses to encode more
than 254 levels and to decode more than 1,024; a 508-byte webhook body was enough for a 500.
One limit, `MAX_JSON_DEPTH`, is checked wherever JSON comes in (GraphQL JSON arguments,
webhook bodies, HTTP Request responses) and on every node output, which keeps everything
Loom stores, encodes or sends far below those limits. docs/operations.md lists the places.

Depth counts arrays and objects: `1` and `"a"` are 0 deep, `[]` and `{}` 1, `{"a": [1]}` 2.
An item is the object around its fields, so its fields may nest `MAX_JSON_DEPTH` levels and
the item one more (`ITEM_DEPTH`): a webhook body of the limit's depth becomes the `body`
field of an item, and that item passes on unchanged.

The check is orjson's encoder, made to refuse exactly past the limit (`encode`): node
outputs, encoded for storage anyway, are checked as they are encoded, and other values
(`nests_deeper`) by encoding them. What orjson does not encode (integers past 64 bits, ...)
is walked one level at a time. Nothing recurses in Python, so no depth can exhaust the
stack; docs/benchmarks.md has the costs. Values are JSON as parsers and expressions make it
(dicts, lists, strings, numbers, booleans, None): orjson encodes tuples as arrays without
counting their depth, and only Python code (a node type's behaviour) can make tuples.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from engine.errors import EngineError

MAX_JSON_DEPTH = 64
ITEM_DEPTH = MAX_JSON_DEPTH + 1

_CONTAINERS = (dict, list, tuple)
# How orjson says that text nests past its own limit (1,024 levels); tests pin the wording.
_ORJSON_TOO_DEEP = "depth limit exceeded"
# Encodings up to this long have their brackets counted; counting (about 1.5 ns a byte)
# costs as much as the sleeve's encoding at about a kilobyte.
_COUNTED_BYTES = 1024
# `_orjson_max_depth` looks no further than this.
_PROBE_DEPTH = 1024


class JsonTooDeep(EngineError, ValueError):
    """A JSON value nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"nested more than {limit} levels deep (the limit)")
        self.limit = limit


def nests_deeper(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep in `value`."""
    try:
        encode(value, limit)
    except JsonTooDeep:
        return True
    except TypeError:  # orjson.JSONEncodeError: not JSON, but the walk found it within
        return False
    return False


def check_depth(value: object, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise `JsonTooDeep` if `value` nests more than `limit` levels deep."""
    if nests_deeper(value, limit):
        raise JsonTooDeep(limit)


def loads(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """JSON text as a value (orjson's parser), nested at most `limit` levels deep.

    `JsonTooDeep` past the limit (even past the parser's own, which it names differently),
    `ValueError` (`orjson.JSONDecodeError`) for text that is not JSON.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if exc.msg == _ORJSON_TOO_DEEP:
            raise JsonTooDeep(limit) from exc
        raise
    check_depth(value, limit)
    return value


def encode(value: object, limit: int = MAX_JSON_DEPTH, option: int = 0) -> bytes:
    """`orjson.dumps(value, option=option)` of a value nested at most `limit` levels deep;
    `JsonTooDeep` past it, and orjson's own error for what is not JSON.

    orjson refuses to encode more than `_ORJSON_MAX_DEPTH` levels. The value is encoded
    inside as many arrays as make that refusal fall exactly past `limit` (a sleeve built once
    per thread; orjson calls no Python code while it encodes, so nothing else can use it
    meanwhile), and their brackets are cut from the result: the check costs a copy of the
    bytes. The sleeve's own encoding takes a couple of microseconds, though, several times a
    small value's: a value with few entries is encoded plainly first and, if that is short,
    its brackets are counted (fewer arrays and objects than the limit cannot nest past it).
    Compact output only (no `OPT_INDENT_2`), or the cut would be wrong.
    """
    margin = _ORJSON_MAX_DEPTH - limit
    if margin <= 0:
        if _walk_nests_deeper(value, limit):
            raise JsonTooDeep(limit)
        return orjson.dumps(value, option=option)
    try:
        if not _many_entries(value, limit):
            encoded = orjson.dumps(value, option=option)
            if (
                len(encoded) <= _COUNTED_BYTES
                and encoded.count(b"[") + encoded.count(b"{") <= limit
            ):
                return encoded
        outermost, slot = _sleeve(margin)
        slot[0] = value
        try:
            encoded = orjson.dumps(outermost, option=option)
        finally:
            slot[0] = None
    except orjson.JSONEncodeError as exc:
        # Past the limit, or something orjson does not encode at all: the walk tells which.
        if _walk_nests_deeper(value, limit):
            raise JsonTooDeep(limit) from exc
        raise
    return encoded[margin:-margin]


def _many_entries(value: object, limit: int) -> bool:
    """Whether `value` and the arrays and objects directly in it have more than `limit`
    entries (node outputs: ports and items). Such a value is rarely short, and holds more
    arrays and objects than the limit whenever its entries are objects, such as items."""
    if not isinstance(value, _CONTAINERS):
        return False
    if len(value) > limit:
        return True
    children = value.values() if isinstance(value, dict) else value
    return (
        len(value) + sum(len(child) for child in children if isinstance(child, _CONTAINERS)) > limit
    )


class _Sleeves(threading.local):
    def __init__(self) -> None:
        self.by_depth: dict[int, tuple[list[Any], list[Any]]] = {}


_SLEEVES = _Sleeves()


def _sleeve(depth: int) -> tuple[list[Any], list[Any]]:
    """`depth` arrays one inside the other, this thread's: the outermost and the innermost,
    whose one element is the slot for the value to encode."""
    found = _SLEEVES.by_depth.get(depth)
    if found is None:
        innermost: list[Any] = [None]
        outermost = innermost
        for _ in range(depth - 1):
            outermost = [outermost]
        found = _SLEEVES.by_depth[depth] = (outermost, innermost)
    return found


def _walk_nests_deeper(value: object, limit: int) -> bool:
    """`nests_deeper` for values orjson does not encode: one level at a time, no recursion."""
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, _CONTAINERS)
        ]
    return False


def _orjson_max_depth() -> int:
    """How many levels orjson encodes (254 in orjson 3): found by trying, not assumed; 0 if
    it encodes `_PROBE_DEPTH` levels (then `encode` walks values instead)."""
    value: list[Any] = []
    for depth in range(1, _PROBE_DEPTH):
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            return depth - 1
        value = [value]
    return 0


_ORJSON_MAX_DEPTH = _orjson_max_depth()
