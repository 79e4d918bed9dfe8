"""Counting a node's output before it is encoded: how large its JSON will be, without building it.

An output's JSON can be far larger than the memory it takes: a value that appears many times
(a Set node writing `{{ $json.big }}` into many fields, Split Out giving every item the same
object, a cross join in Merge) is one object in memory and is encoded every time it appears.
Encoding first and measuring the bytes after would build the whole amplified text before
finding it too large. So an output is *counted* first, and refused past the limit before any
of it is encoded (`NODE_OUTPUT_TOO_LARGE`, docs/operations.md "Output size limit").

The count is a lower bound of the size as compact JSON, in bytes, with a shared reference
counted each time it appears:

- text: its characters and two quotes (escapes and multi-byte characters only add);
- a number, `true`, `false`, `null`: 1;
- an array: its brackets, its commas and its elements;
- an object: its braces and commas, each key with its quotes and colon, and the values.

It is exact for ASCII text without escapes and one-digit numbers, and never more than the
encoding, so a count past the limit is an output past it. The encoding is at most
`MAX_EXPANSION` times the count (a number counted 1 may take 24 characters; a character of
text at most 6, as `\\u0001`): the encoder (engine/outputs.py) uses that to keep each piece it
encodes small, whatever it holds.

Counting walks lists and objects. An item without any is counted on the spot; another by a
plain recursive walk, quick for the small values most items hold, which gives up past
`QUICK_VISITS` elements for a walk with an explicit stack: a generator that yields every
`VISITS_PER_YIELD` elements so that its caller can give the event loop a turn. Both check the
nesting limit on the way (engine/json_depth.py), so the encoder need not; neither recurses
deeper than that limit. Counting costs Python's time per element, several times what
encoding costs (docs/benchmarks.md): the price of knowing before building.
Lists and objects that are items, or large, have their count remembered by identity for the
rest of the execution (`OutputSizes`): an item passed on by Filter, Sort or Merge is not walked
again, and a value met again (a shared reference) costs one look-up, not a walk. That is sound
because outputs are never changed once output (behaviours copy what they change:
engine/nodes/base.py), and because everything counted is kept alive, so an identity is never
reused while remembered.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Generator, Iterator
from itertools import chain
from typing import Any

from engine.json_depth import ITEM_DEPTH, JsonTooDeep
from engine.slices import at_once

# An encoding is at most this many times its count: `-1.7976931348623157e+308` is counted 1.
MAX_EXPANSION = 24
VISITS_PER_YIELD = 16_384
# An item is first counted by a plain recursive walk, which gives up past this many elements
# (a millisecond or two) for the one that can pause.
QUICK_VISITS = 16_384
# Lists and objects this long, or counted this large, are remembered, and so are items.
# (Remembering the small values in items too, which a Set node's copies share, saved little
# time and cost 30 to 100 MB more at the peak of 100,000 items through five nodes.)
_REMEMBER_LENGTH = 64
REMEMBER_BYTES = 1024
_REMEMBER_DEPTH = 1
# Remembered counts are packed with the height of the value (how many lists and objects
# nest in it, itself included), so that a value met again deeper down still obeys the
# nesting limit: `count * _HEIGHTS + height`.
_HEIGHTS = 128

Counting = Generator[None, None, int]


class OutputSizes:
    """Counts remembered in one execution, by identity (see the module docstring)."""

    __slots__ = ("_counts", "_kept", "_visits_left")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}  # id -> count * _HEIGHTS + height
        self._kept: list[Any] = []
        self._visits_left = 0

    def known(self, value: Any) -> int | None:
        """The remembered count of `value`, if it has one."""
        packed = self._counts.get(id(value))
        return None if packed is None else packed // _HEIGHTS

    def count_items(
        self, items: list[Any], allowed: int | None = None
    ) -> Generator[None, None, tuple[int, list[int]]]:
        """Count a list of items (objects) as JSON, remembering them: the count of the list,
        and of each item. Stops as soon as the count passes `allowed` (with a count past it,
        and the items counted so far). Raises `JsonTooDeep` for an item nested past the
        limit, `KeyNotText` for an object key that is not text."""
        allowed = sys.maxsize if allowed is None else allowed
        counts = self._counts
        known = counts.get
        keep = self._kept.append
        item_counts: list[int] = []
        add = item_counts.append
        total = 1 + len(items) + (not items)  # the brackets and commas
        visits = 0
        for item in items:
            packed = known(id(item))
            if packed is not None:
                count = packed // _HEIGHTS
            else:
                # Most items hold no list or object: counted here, without a walk.
                count = 1 + (not item)  # the braces and commas
                for key, value in item.items():
                    if type(key) is not str:
                        raise KeyNotText
                    kind = type(value)
                    if kind is str:
                        count += len(key) + len(value) + 6  # `"key":"value",`
                    elif kind is dict or kind is list or kind is tuple:
                        self._visits_left = QUICK_VISITS
                        try:
                            count = self._quick(item, 1) // _HEIGHTS
                        except _TooLong:  # a large item: the walk that can pause
                            count = (yield from self._count([item], 0, allowed - total)) - 2
                        visits += QUICK_VISITS - self._visits_left
                        break
                    else:
                        count += len(key) + 5  # `"key":1,`
                else:
                    counts[id(item)] = count * _HEIGHTS + 1
                    keep(item)
                visits += len(item)
            add(count)
            total += count
            if total > allowed:
                break
            if visits >= VISITS_PER_YIELD:
                visits = 0
                yield
        return total, item_counts

    def count_value(self, value: Any, allowed: int) -> int:
        """The count of any JSON value, or a count past `allowed` as soon as it passes it
        (without giving the event loop a turn: for small `allowed`)."""
        if type(value) is str:
            return len(value) + 2
        return at_once(self._count([value], 0, allowed + 2)) - 2

    def _quick(self, container: Any, depth: int) -> int:
        """The packed count of a list or object at `depth`, walked recursively: quick for
        the few small values most items hold. `_TooLong` once it has looked at more than
        `QUICK_VISITS` elements in all (then `_count`, which can pause, takes over)."""
        length = len(container)
        self._visits_left -= length
        if self._visits_left < 0:
            raise _TooLong
        if type(container) is dict:
            total = 1 + 4 * length + (length == 0) + _key_chars(container)
            values = container.values()
        else:
            total = 1 + length + (length == 0)
            values = container
        counts = self._counts
        tallest = 0
        for value in values:
            kind = type(value)
            if kind is str:
                total += len(value) + 2
            elif kind is dict or kind is list or kind is tuple:
                packed = counts.get(id(value))
                if packed is None:
                    if depth >= ITEM_DEPTH:
                        raise JsonTooDeep
                    packed = self._quick(value, depth + 1)
                count, height = divmod(packed, _HEIGHTS)
                if depth + height > ITEM_DEPTH:
                    raise JsonTooDeep
                total += count
                if height > tallest:
                    tallest = height
            else:
                total += 1
        packed = total * _HEIGHTS + tallest + 1
        if depth <= _REMEMBER_DEPTH or total >= REMEMBER_BYTES or length >= _REMEMBER_LENGTH:
            counts[id(container)] = packed
            self._kept.append(container)
        return packed

    def _count(self, root: list[Any], level: int, allowed: int) -> Counting:
        counts = self._counts
        keep = self._kept.append
        stack: list[tuple[Any, Iterator[Any], int, int, int]] = []
        container: Any = root
        values = _marked(root) if len(root) > VISITS_PER_YIELD else iter(root)
        length = len(root)
        total = 1 + length + (length == 0)
        outer = 0  # the counts of the containers on the stack, which `total` adds to
        depth = level
        tallest = 0  # the height of the tallest list or object in `container` so far
        visits = length
        while True:
            for value in values:
                kind = type(value)
                if kind is str:
                    total += len(value) + 2
                elif kind is dict or kind is list or kind is tuple:
                    packed = counts.get(id(value))
                    if packed is None and depth < ITEM_DEPTH:
                        # A value of a long list (items aggregated, say): quick if small.
                        self._visits_left = QUICK_VISITS
                        with contextlib.suppress(_TooLong):  # large: walked below
                            packed = self._quick(value, depth + 1)
                        visits += QUICK_VISITS - self._visits_left
                    if packed is not None:
                        count, height = divmod(packed, _HEIGHTS)
                        if depth + height > ITEM_DEPTH:
                            raise JsonTooDeep
                        total += count
                        if height > tallest:
                            tallest = height
                        if visits >= VISITS_PER_YIELD:
                            visits = 0
                            if outer + total > allowed:
                                return outer + total
                            yield
                        continue
                    if depth >= ITEM_DEPTH:
                        raise JsonTooDeep
                    if outer + total > allowed:
                        return outer + total
                    stack.append((container, values, total, depth, tallest))
                    outer += total
                    container, depth, tallest = value, depth + 1, 0
                    length = len(value)
                    if kind is dict:
                        total = 1 + 4 * length + (length == 0) + _key_chars(value)
                        elements: Any = value.values()
                    else:
                        total = 1 + length + (length == 0)
                        elements = value
                    values = _marked(elements) if length > VISITS_PER_YIELD else iter(elements)
                    visits += length
                    if visits >= VISITS_PER_YIELD:
                        visits = 0
                        yield
                    break
                elif value is _MARK:  # a long list or object: another stretch of it
                    if outer + total > allowed:
                        return outer + total
                    yield
                else:
                    total += 1
            else:
                if not stack:
                    return total
                height = tallest + 1
                if (
                    depth <= _REMEMBER_DEPTH
                    or total >= REMEMBER_BYTES
                    or len(container) >= _REMEMBER_LENGTH
                ):
                    counts[id(container)] = total * _HEIGHTS + height
                    keep(container)
                count = total
                container, values, total, depth, tallest = stack.pop()
                outer -= total
                total += count
                if height > tallest:
                    tallest = height


class _TooLong(Exception):
    """A quick count looked at too many elements."""


class _Mark:
    """Between stretches of a long list or object (`_marked`): the count may yield there."""


_MARK = _Mark()


def _marked(elements: Any) -> Iterator[Any]:
    """The elements with `_MARK` after every `VISITS_PER_YIELD` of them."""
    listed = list(elements)
    return chain.from_iterable(
        (*listed[start : start + VISITS_PER_YIELD], _MARK)
        for start in range(0, len(listed), VISITS_PER_YIELD)
    )


class KeyNotText(TypeError):
    """An object key that is not text (which orjson refuses too)."""


def _key_chars(value: dict[Any, Any]) -> int:
    try:
        return sum(map(len, value))
    except TypeError:
        raise KeyNotText from None
