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

The check walks the value one level at a time, never recursing; each level is a handful of
C-level passes (`map`, `chain`, `compress`) over its values, so its cost is that of reading
every value once: a few milliseconds for a 1 MB item, a few times what orjson takes to
encode it (`bench/json_depth.py`, docs/benchmarks.md).
"""

from __future__ import annotations

from itertools import chain, compress
from operator import not_
from typing import Any

import orjson

MAX_JSON_DEPTH = 64
ITEM_DEPTH = MAX_JSON_DEPTH + 1

_CONTAINERS = (dict, list, tuple)
# How orjson says that text nests past its own limit (1,024 levels); tests pin the wording.
_ORJSON_TOO_DEEP = "depth limit exceeded"


class JsonTooDeep(ValueError):
    """A JSON value nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        super().__init__(f"nested more than {limit} levels deep (the limit)")
        self.limit = limit


def nests_deeper(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep in `value`."""
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = _nested_children(level)
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


def _nested_children(level: list[Any]) -> list[Any]:
    """The arrays and objects directly inside the containers of `level`.

    Type tests run per distinct type, not per value: a level's values have a few types.
    """
    kinds = set(map(type, level))
    dict_kinds = {kind for kind in kinds if issubclass(kind, dict)}
    values: list[Any]
    if len(dict_kinds) == len(kinds):
        values = list(chain.from_iterable(map(dict.values, level)))
    elif not dict_kinds:
        values = list(chain.from_iterable(level))
    else:
        is_dict = list(map(dict_kinds.__contains__, map(type, level)))
        values = list(
            chain(
                chain.from_iterable(map(dict.values, compress(level, is_dict))),
                chain.from_iterable(compress(level, map(not_, is_dict))),
            )
        )
    value_kinds = set(map(type, values))
    nested = {kind for kind in value_kinds if issubclass(kind, _CONTAINERS)}
    if not nested:
        return []
    if len(nested) == len(value_kinds):
        return values
    return list(compress(values, map(nested.__contains__, map(type, values))))
