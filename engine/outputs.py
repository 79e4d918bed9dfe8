"""Checking and serializing node outputs: JSON objects per port, stored in full, in chunks.

An output is refused past a size limit (`NODE_OUTPUT_TOO_LARGE`, `LOOM_MAX_NODE_OUTPUT_BYTES`):
every process that runs nodes holds outputs in memory and stores them, and every reader
pages through them (docs/operations.md, "Output size limit").
"""

from __future__ import annotations

import bisect
import functools
import itertools
import sys
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.json_depth import JsonTooDeep
from engine.nodes.base import Item, NodeError, PortItems
from engine.output_meter import deepest_item, not_text_key, passing_item, too_deep, too_large
from engine.output_size import REMEMBER_BYTES, KeyNotText, OutputSizes
from engine.slices import at_once

_ORJSON_OPTIONS = (
    # Anything orjson would quietly turn into JSON but is not JSON data is refused instead.
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
PREVIEW_MAX_BYTES = 2048

# Chunks of about this many bytes of JSON are read a page at a time; a chunk of several
# items past `SPLIT_BYTES` is split, so that reading an item never decodes much else.
CHUNK_BYTES = 64 * 1024
SPLIT_BYTES = 4 * CHUNK_BYTES
# An item counted larger than this is encoded a piece at a time, none counted larger (so
# none encodes to more than `MAX_EXPANSION` times this, in a millisecond or two); text in
# stretches of this many characters (at most 6 bytes each as JSON). orjson reserves up to
# ten times its result while it encodes: a piece costs a few MB at most.
PIECE_BYTES = CHUNK_BYTES
TEXT_PIECE_CHARS = 256 * 1024


def check_outputs(result: Any, ports: tuple[str, ...]) -> PortItems:
    """The behaviour's result as ports of items, or a NodeError saying what is wrong (the
    executor names the node)."""
    if not isinstance(result, dict):
        raise NodeError(
            f"returned a {type(result).__name__}, not outputs by port",
            error_type="NODE_OUTPUT_INVALID",
        )
    for port, items in result.items():
        if port not in ports:
            raise NodeError(
                f"produced items on unknown output {port!r}",
                error_type="NODE_OUTPUT_INVALID",
            )
        if not isinstance(items, list) or not all(type(item) is dict for item in items):
            raise NodeError(
                f"output {port!r} must be a list of JSON objects",
                error_type="NODE_OUTPUT_INVALID",
            )
    return result


@dataclass(slots=True)
class OutputChunk:
    """Consecutive items of one port, encoded as a JSON array: the unit stored and read."""

    port: str
    first: int  # index of its first item in the port
    count: int
    data: bytes | bytearray  # a large item's is built a piece at a time


@dataclass(slots=True)
class EncodedOutputs:
    """A node's outputs encoded for storage: its items in chunks of about `CHUNK_BYTES`
    (an item larger than that alone in its chunk), so that a page of them can be read
    without decoding the rest. `raw_bytes` is the size of the outputs as one JSON document
    (`{"port": [items], ...}`), the size the output limit applies to."""

    ports: dict[str, int]  # item count by port, in port order
    chunks: list[OutputChunk]
    raw_bytes: int

    def first_item_bytes(self) -> tuple[int, bool] | None:
        """The size of the first item of the first port with items, and whether it is exact
        (an upper bound when it shares its chunk); None without items."""
        if not self.chunks:
            return None
        first = self.chunks[0]
        return len(first.data) - 2, first.count == 1


def serialize_outputs(
    outputs: PortItems, max_bytes: int | None = None, sizes: OutputSizes | None = None
) -> EncodedOutputs:
    """`encode_outputs` run to its end without giving the event loop a turn (small outputs:
    error items, execution outputs, tests)."""
    small = encode_small(outputs, max_bytes)
    if small is not None:
        return small
    return at_once(encode_outputs(outputs, max_bytes, sizes or OutputSizes()))


# Outputs of at most this many items, each without lists or objects inside, are counted and
# encoded at once (`encode_small`): most nodes of most workflows.
SMALL_ITEMS = 16


def encode_small(outputs: PortItems, max_bytes: int | None) -> EncodedOutputs | None:
    """What `encode_outputs` gives, found without its machinery for an output of a few flat
    items (whose count is quick and whose encoding is small); None for any other output."""
    counted_bytes = 0
    for items in outputs.values():
        if len(items) > SMALL_ITEMS:
            return None
        for item in items:
            count = _flat_count(item)
            if count is None:
                return None
            counted_bytes += count
    if counted_bytes > CHUNK_BYTES:
        return None
    chunks: list[OutputChunk] = []
    ports: dict[str, int] = {}
    raw_bytes = 1 + (not outputs)  # braces, less the comma the first port does not have
    for port, items in outputs.items():
        ports[port] = len(items)
        raw_bytes += _key_bytes(port) + 4  # a comma, `"port":[` and `]`
        if items:
            data = _encode(items)
            if len(data) <= SPLIT_BYTES or len(items) == 1:
                port_chunks: Iterable[OutputChunk] = (OutputChunk(port, 0, len(items), data),)
            else:
                port_chunks = _regrouped(port, 0, items)
            for chunk in port_chunks:
                raw_bytes += len(chunk.data) - 2 + (chunk.first > 0)
                if max_bytes is not None and raw_bytes > max_bytes:
                    raise _too_large(raw_bytes, max_bytes, port, chunk)
                chunks.append(chunk)
    if max_bytes is not None and raw_bytes > max_bytes:  # ports without items, past it
        raise too_large(raw_bytes, max_bytes)
    return EncodedOutputs(ports, chunks, raw_bytes)


def _flat_count(item: Item) -> int | None:
    """An item's count (engine/output_size.py), if no list or object is in it."""
    count: int = 1 + (not item)  # the braces and commas
    try:
        for key, value in item.items():
            kind = type(value)
            if kind is str:
                count += len(key) + len(value) + 6  # `"key":"value",`
            elif kind is dict or kind is list or kind is tuple:
                return None
            else:
                count += len(key) + 5  # `"key":1,`
    except TypeError:  # a key that is not text: `encode_outputs` says so
        return None
    return count


def encode_outputs(
    outputs: PortItems, max_bytes: int | None, sizes: OutputSizes
) -> Generator[None, None, EncodedOutputs]:
    """The outputs encoded for storage (`EncodedOutputs`), as work that yields where the
    event loop may get a turn (`slices.paced`).

    The output is counted first (engine/output_size.py): past `max_bytes` it is a NodeError
    `NODE_OUTPUT_TOO_LARGE` before anything is encoded, however often its values repeat.
    Then it is encoded a piece at a time, each piece small whatever it holds (a batch of
    items counted at most `CHUNK_BYTES`, an item counted at most `PIECE_BYTES`, or a stretch
    of a larger item), its size as JSON checked against the limit as it goes. A value that is
    not JSON, or an item nested past the JSON nesting limit, is a NodeError too. The executor
    names the node.
    """
    limit = max_bytes if max_bytes is not None else sys.maxsize
    # The braces around the ports and the commas between them.
    counted_bytes = 1 + len(outputs) + (not outputs)
    port_counts: dict[str, tuple[int, list[int]]] = {}
    for port, items in outputs.items():
        counted_bytes += _key_bytes(port) + 1
        try:
            count, item_counts = yield from sizes.count_items(items, limit - counted_bytes)
        except JsonTooDeep:
            raise too_deep(port, deepest_item(items)) from None
        except KeyNotText:
            raise not_text_key() from None
        counted_bytes += count
        if counted_bytes > limit:
            index = passing_item(item_counts, limit - (counted_bytes - count))
            raise too_large(counted_bytes, limit, port, f"item {index}")
        port_counts[port] = count, item_counts
    chunks: list[OutputChunk] = []
    ports: dict[str, int] = {}
    raw_bytes = 1  # the braces around the ports, less the comma the first port does not have
    for port, items in outputs.items():
        # A comma, `"port":[` and `]`.
        raw_bytes += _key_bytes(port) + 4
        ports[port] = len(items)
        try:
            count, item_counts = port_counts[port]
            room = limit - raw_bytes
            for chunk in _port_chunks(port, items, count, item_counts, sizes, room):
                if chunk is None:
                    yield
                    continue
                # A chunk's brackets are not stored in the document; a comma joins it to
                # the last.
                raw_bytes += len(chunk.data) - 2 + (chunk.first > 0)
                if raw_bytes > limit:
                    raise _too_large(raw_bytes, limit, port, chunk)
                chunks.append(chunk)
                yield
        except _PastRoom as past:
            raise too_large(raw_bytes + past.written, limit, port, f"item {past.index}") from None
    raw_bytes += not ports  # `{}`: two braces and no port
    if raw_bytes > limit:  # ports without items, past a tiny limit
        raise too_large(raw_bytes, limit)
    return EncodedOutputs(ports, chunks, raw_bytes)


@functools.lru_cache(maxsize=256)
def _key_bytes(port: str) -> int:
    """The size of a port's name as a JSON string (ports are few: their names recur)."""
    return len(orjson.dumps(port))


def _too_large(raw_bytes: int, max_bytes: int, port: str, chunk: OutputChunk) -> NodeError:
    last = chunk.first + chunk.count - 1
    items = f"item {last}" if chunk.count == 1 else f"items {chunk.first}-{last}"
    return too_large(raw_bytes, max_bytes, port, items)


def _port_chunks(
    port: str,
    items: list[Item],
    count: int,
    item_sizes: list[int],
    sizes: OutputSizes,
    room: int,
) -> Generator[OutputChunk | None, None, None]:
    """The port's items in chunks of about `CHUNK_BYTES`, and None where the event loop may
    get a turn. Batches of items are chosen by their counts, so that none encodes to more than
    `MAX_EXPANSION` times `CHUNK_BYTES` whatever it holds; a batch that turns out much larger
    than its count (numbers, escapes) is encoded again item by item. An item counted more than
    `PIECE_BYTES` is encoded a piece at a time (`_large_item`), in `room` bytes at most."""
    if count <= CHUNK_BYTES:  # most outputs: one chunk
        if items:
            yield from _batch(port, 0, items)
        return
    # Each item's count with the comma after it, added up: where batches end.
    ends = list(itertools.accumulate(size + 1 for size in item_sizes))
    start = 0
    while start < len(items):
        if item_sizes[start] > PIECE_BYTES:
            chunk = yield from _large_item(port, start, items[start], sizes, room)
            yield chunk
            room -= len(chunk.data)
            start += 1
            continue
        before = ends[start - 1] if start else 0
        end = max(bisect.bisect_right(ends, before + CHUNK_BYTES, lo=start), start + 1)
        for chunk in _batch(port, start, items[start:end]):
            yield chunk
            room -= len(chunk.data)
        start = end


def _batch(port: str, start: int, batch: list[Item]) -> Iterator[OutputChunk]:
    data = _encode(batch)
    if len(data) <= SPLIT_BYTES or len(batch) == 1:
        yield OutputChunk(port, start, len(batch), data)
    else:
        yield from _regrouped(port, start, batch)


def _regrouped(port: str, start: int, batch: list[Item]) -> Iterator[OutputChunk]:
    """The batch's items encoded one by one, the small ones joined again into chunks."""
    group: list[bytes] = []
    group_bytes = 0
    group_start = start
    for offset, item in enumerate(batch):
        data = _encode(item)
        if group and group_bytes + len(data) > CHUNK_BYTES:
            yield OutputChunk(port, group_start, len(group), b"[" + b",".join(group) + b"]")
            group, group_bytes = [], 0
        if not group:
            group_start = start + offset
        group.append(data)
        group_bytes += len(data) + 1
    if group:
        yield OutputChunk(port, group_start, len(group), b"[" + b",".join(group) + b"]")


def _encode(value: Any) -> bytes:
    """A value counted already (so nested within the limit) as JSON, or NODE_OUTPUT_INVALID."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise NodeError(
            f"returned a value that is not JSON: {not_json_reason(exc)}",
            error_type="NODE_OUTPUT_INVALID",
        ) from exc


class _PastRoom(Exception):
    """A large item's encoding passed the room left under the limit."""

    def __init__(self, index: int, written: int) -> None:
        super().__init__(index, written)
        self.index = index
        self.written = written


def _large_item(
    port: str, index: int, item: Item, sizes: OutputSizes, room: int
) -> Generator[None, None, OutputChunk]:
    """A chunk of one item too large to encode at once, encoded a piece at a time (yielding
    after each) while it fits in `room` bytes."""
    data = bytearray(b"[")
    try:
        yield from _pieces(data, item, sizes, room)
    except _PastRoom:
        raise _PastRoom(index, len(data)) from None
    data += b"]"
    return OutputChunk(port, index, 1, data)


def _pieces(
    out: bytearray, value: Any, sizes: OutputSizes, room: int
) -> Generator[None, None, None]:
    """Append the JSON of `value`, counted more than `PIECE_BYTES`, to `out` a piece at a
    time: text in stretches, an object entry by entry, a list in runs of elements counted
    `PIECE_BYTES` at most; larger values inside are taken apart in turn."""
    kind = type(value)
    if kind is str:
        out += b'"'
        for start in range(0, len(value), TEXT_PIECE_CHARS):
            out += _inner(value[start : start + TEXT_PIECE_CHARS])
            yield from _checked(out, room)
        out += b'"'
    elif kind is dict:
        out += b"{"
        for position, (key, child) in enumerate(value.items()):
            if type(key) is not str:
                raise not_text_key()
            out += b',"' if position else b'"'
            out += _inner(key)
            out += b'":'
            if _count_of(child, sizes) > PIECE_BYTES:
                yield from _pieces(out, child, sizes, room)
            else:
                out += _encode(child)
                yield from _checked(out, room)
        out += b"}"
    else:  # a list, or a tuple (which orjson encodes as one)
        out += b"["
        run_start, run_count = 0, 0  # the elements not written yet, and their count
        for position, child in enumerate(value):
            count = _count_of(child, sizes)
            if count <= PIECE_BYTES and run_count + count <= PIECE_BYTES:
                run_count += count + 1
                continue
            if position > run_start:
                out += b"," if run_start else b""
                out += _inner(value[run_start:position])
                yield from _checked(out, room)
            if count > PIECE_BYTES:
                out += b"," if position else b""
                yield from _pieces(out, child, sizes, room)
                run_start, run_count = position + 1, 0
            else:
                run_start, run_count = position, count + 1
        if len(value) > run_start:
            out += b"," if run_start else b""
            out += _inner(value[run_start:])
            yield from _checked(out, room)
        out += b"]"


def _inner(value: Any) -> memoryview:
    """The JSON of text or a list without its quotes or brackets."""
    return memoryview(_encode(value))[1:-1]


def _count_of(value: Any, sizes: OutputSizes) -> int:
    """The count of a value in a counted output: a list or object counted large is
    remembered, so one that is not is small."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is dict or kind is list or kind is tuple:
        known = sizes.known(value)
        return REMEMBER_BYTES if known is None else known
    return 1


def _checked(out: bytearray, room: int) -> Generator[None, None, None]:
    if len(out) > room:
        raise _PastRoom(0, len(out))
    yield


# What orjson says when it refuses a value, in the user's words.
_NOT_JSON_REASONS = (
    (
        "Integer exceeds 64-bit range",
        "an integer too large to store (integers must fit in 64 "
        "bits; use a string or a decimal number for larger values)",
    ),
    (
        "surrogates not allowed",
        "text holding a lone UTF-16 surrogate (such as \\ud800), which is not valid Unicode",
    ),
    ("Dict key must be str", "an object key that is not text"),
)


def not_json_reason(exc: Exception) -> str:
    """Why orjson refused a value, as a user would say it."""
    message = str(exc)
    for marker, reason in _NOT_JSON_REASONS:
        if marker in message:
            return reason
    kind = message.rpartition("Type is not JSON serializable: ")[2]
    if kind != message:
        return f"a {kind.rpartition('.')[2]} value, which JSON has no type for"
    return "a value JSON cannot represent"


def preview(items: list[Item], encoded: EncodedOutputs | None, input_bytes: int | None) -> Any:
    """The first item if it is small, for live events; None otherwise. Its size comes from
    its encoding (or, for the execution input passed on, from the input's): a large first
    item is not encoded again just to find that it is large."""
    if not items:
        return None
    size = encoded.first_item_bytes() if encoded is not None else None
    if size is None and input_bytes is not None:
        size = (input_bytes, True)
    if size is not None:
        item_bytes, exact = size
        if item_bytes <= PREVIEW_MAX_BYTES:
            return items[0]
        if exact:
            return None
    # It shares its chunk (of at most `SPLIT_BYTES`), or nothing says how large it is.
    encoded_item = orjson.dumps(items[0], option=_ORJSON_OPTIONS)
    return items[0] if len(encoded_item) <= PREVIEW_MAX_BYTES else None
