"""Refusing outputs that a behaviour makes large out of small inputs, as it builds them.

A node's output is checked against the size limit as it is encoded (engine/outputs.py), a
batch of items at a time, so that a large output stops at the limit without the rest being
encoded. Some behaviours, though, write the same value into many places by reference: Set
writing `{{ $json.big }}` into many fields or a constant into every item, Split Out copying
an item's other fields into the item of every element, Merge joining one item to many. Such
an output takes little memory until it is encoded, yet one of its items can be far past the
limit (its JSON built whole before the limit could say so), or its items far more than the
inputs. These behaviours count what they write with a `Growth` meter and fail with
`NODE_OUTPUT_TOO_LARGE` as soon as the count passes the limit, before building the rest.

Counts are lower bounds of the JSON the output takes (a text its length and quotes, a list or
object its encoding, any other value a byte), so that an output refused here is one the
encoding would refuse too. What no behaviour writes twice (an item passed on, the elements
of a split list) is not counted: its size is its input's, which the limit held already.
Nothing is counted without a limit.

Not counted: Python objects that hold no repeated JSON, such as Split Out's one small item
per element of a long list; their JSON is no larger than the input's, and the encoder stops at
the limit a batch at a time. Plugins' behaviours (the operator's code) are trusted likewise.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from engine.nodes.base import NodeError, NodeRunContext
from engine.output_limit import MAX_OUTPUT_SETTING

# Sizes and texts remembered per node run, at most: enough for values shared by many items
# (there are few of them), bounded when every item brings its own.
_SIZES_KEPT = 256


def too_large(counted: int, max_bytes: int, port: str | None = None, items: str = "") -> NodeError:
    """NODE_OUTPUT_TOO_LARGE: at least `counted` bytes of JSON, past `max_bytes`; `port` and
    `items` say where the limit was passed (the executor names the node)."""
    where = f", past it with output {port!r} {items}" if port is not None and items else ""
    return NodeError(
        f"produced more output than the limit of {max_bytes:,} bytes of JSON "
        f"({MAX_OUTPUT_SETTING}): at least {counted:,} bytes{where}",
        error_type="NODE_OUTPUT_TOO_LARGE",
        details={"bytes": counted, "maxBytes": max_bytes, "setting": MAX_OUTPUT_SETTING},
    )


def json_bytes(value: Any) -> int:
    """A lower bound of the size of `value` as JSON: exact for lists and objects, which are
    encoded (they come from the node's inputs or from expressions, both bounded already)."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is list or kind is dict:
        try:
            return len(orjson.dumps(value))
        except (TypeError, orjson.JSONEncodeError):
            return 2  # not JSON: the encoding of the output refuses it, saying why
    return 1


class Growth:
    """Counts the JSON a behaviour writes again into its output (see the module's text),
    for one node run: `add` after each item, `repeat` for a size written into many."""

    __slots__ = ("_limit", "_sizes", "_total", "active")

    def __init__(self, ctx: NodeRunContext) -> None:
        self._limit = ctx.max_output_bytes
        self.active = self._limit is not None
        self._total = 0
        # The sizes of the last lists and objects written, by identity (with the value, so
        # that the identity stays theirs): a value written into every item is encoded once.
        # Bounded: values written once each (one per item) must not pile up.
        self._sizes: dict[int, tuple[Any, int]] = {}

    def size(self, value: Any) -> int:
        """`json_bytes(value)`, remembered for lists and objects."""
        kind = type(value)
        if kind is str:
            return len(value) + 2
        if kind is not list and kind is not dict:
            return 1
        known = self._sizes.get(id(value))
        if known is not None:
            return known[1]
        size = json_bytes(value)
        if len(self._sizes) >= _SIZES_KEPT:
            self._sizes.clear()
        self._sizes[id(value)] = (value, size)
        return size

    def room(self) -> int | None:
        """What may still be written (None: no limit), for loops that add up their counts
        themselves and `add` them once past it."""
        return None if self._limit is None else self._limit - self._total

    def add(self, count: int, index: int, port: str = "main") -> None:
        """Count `count` bytes written with item `index` of `port`."""
        self._total += count
        if self._limit is not None and self._total > self._limit:
            raise too_large(self._total, self._limit, port, f"item {index}")

    def repeat(self, count: int, times: int, first: int = 0, port: str = "main") -> None:
        """Count `count` bytes written into each of `times` items from item `first` on."""
        limit = self._limit
        if limit is None or count <= 0 or times <= 0:
            return
        if self._total + count * times <= limit:
            self._total += count * times
            return
        # The item with which the count passes the limit.
        passing = (limit - self._total) // count
        self.add(count * (passing + 1), first + passing, port)


class KeyTexts:
    """The JSON text of lists and objects that items are sorted or joined by, made once per
    value (by identity): items that share one large key by reference must not each hold a
    text of it (a million items sharing a 1 MB key would hold a terabyte)."""

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}

    def __call__(self, value: Any) -> str:
        known = self._texts.get(id(value))
        if known is None:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
            if len(self._texts) >= _SIZES_KEPT:  # keys met once each must not pile up
                self._texts.clear()
            known = self._texts[id(value)] = (value, text)
        return known[1]
