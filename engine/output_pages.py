"""Pages of stored items under a size cap (pure): what the API returns of outputs and inputs.

A page holds items from an offset, at most `limit` of them, and at most `max_bytes` of JSON
as the array it is returned as. An item that does not fit ends the page; when it is the
first, the page holds its truncation marker instead (engine/truncation.py), so that a page
never holds more than the cap and always moves on. Where the items come from, and how
little of them is decoded, is the reader's business (storage/output_reads.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from engine.truncation import MIN_MARKER_BYTES, marker, truncated

MAX_PAGE_ITEMS = 10_000
# `maxBytes` bounds: room for the page's brackets and a marker with some preview; and an
# answer that a server can build without holding much more than it in memory.
MIN_PAGE_BYTES = 2 * MIN_MARKER_BYTES
MAX_PAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Page:
    port: str
    items: list[Any]
    offset: int  # index of the first item of this page
    total: int  # items of the port in all
    # Items after this page's left out (by the cap or the limit), or its one item a marker.
    truncated: bool
    next_offset: int | None


def page_bounds(offset: int, limit: int) -> tuple[int, int]:
    """The offset and item limit a request asks for, within what pages allow."""
    return max(offset, 0), min(max(limit, 1), MAX_PAGE_ITEMS)


class PageBuilder:
    """Collects a page item by item: `fits` says whether an item of that size still goes
    in; `add` it if so; otherwise, when the page is still empty, `add_marker`."""

    def __init__(self, port: str, offset: int, limit: int, max_bytes: int, total: int) -> None:
        self.port = port
        self.offset = offset
        self.limit = limit
        self.total = total
        self.items: list[Any] = []
        self.room = max_bytes - 2  # the array's brackets
        self.capped = False
        self.marked = False

    @property
    def done(self) -> bool:
        return self.capped or len(self.items) >= self.limit

    def fits(self, size: int) -> bool:
        return size + (1 if self.items else 0) <= self.room  # a comma before all but the first

    def add(self, item: Any, size: int) -> None:
        self.room -= size + (1 if self.items else 0)
        self.items.append(item)

    def add_marker(self, json_prefix: bytes, size: int) -> None:
        """The first item does not fit: its marker stands in for it, and the page ends."""
        self.items.append(marker(json_prefix, size, self.room))
        self.capped = self.marked = True

    def stop(self) -> None:
        """An item did not fit: the page ends before it."""
        self.capped = True

    def add_all(self, items: Iterable[Any]) -> None:
        """Items already decoded, measured by encoding them, until one does not fit."""
        for item in items:
            if self.done:
                return
            encoded = orjson.dumps(item)
            if self.fits(len(encoded)):
                self.add(item, len(encoded))
            elif not self.items:
                self.add_marker(encoded[: self.room], len(encoded))
            else:
                self.stop()

    def page(self) -> Page:
        end = self.offset + len(self.items)
        more = end < self.total
        following = end if more else None
        return Page(self.port, self.items, self.offset, self.total, more or self.marked, following)


def page_of(port: str, items: list[Any], offset: int, limit: int, max_bytes: int) -> Page:
    """A page of items held in memory (outputs stored before they were stored in chunks)."""
    offset, limit = page_bounds(offset, limit)
    builder = PageBuilder(port, offset, limit, max_bytes, len(items))
    builder.add_all(items[offset : offset + limit])
    return builder.page()


class MemoryOutput:
    """Output items at hand, by port, paged like stored ones (values kept whole by the
    oldest releases)."""

    def __init__(self, outputs: dict[str, list[Any]]) -> None:
        self._outputs = outputs

    def ports(self) -> list[tuple[str, int]]:
        return [(port, len(items)) for port, items in self._outputs.items()]

    def items_bytes(self, port: str | None = None) -> int:
        if port is None:
            port = next((name for name, items in self._outputs.items() if items), "main")
        return len(orjson.dumps(self._outputs.get(port, [])))

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page:
        if port is None:
            port = next((name for name, items in self._outputs.items() if items), "main")
        return page_of(port, self._outputs.get(port, []), offset, limit, max_bytes)


class MemoryValue:
    """A JSON value at hand, read like a stored one."""

    def __init__(self, value: Any) -> None:
        self._value = value

    async def read(self, max_bytes: int) -> tuple[Any, bool]:
        value = truncated(self._value, max_bytes)
        return value, value is not self._value
