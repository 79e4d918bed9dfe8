"""Checking and serializing node outputs: JSON objects per port, stored in full, in chunks.

An output is refused past a size limit (`NODE_OUTPUT_TOO_LARGE`, `LOOM_MAX_NODE_OUTPUT_BYTES`):
every process that runs nodes holds outputs in memory and stores them, and every reader
pages through them (docs/operations.md, "Output size limit").
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from engine.json_depth import ITEM_DEPTH, MAX_JSON_DEPTH, JsonTooDeep, encode, nests_deeper
from engine.nodes.base import Item, NodeError, PortItems
from engine.nodes.growth import too_large

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
# Items in a port's first chunk: most outputs are a few small items, one chunk; large first
# items cost one encoding more (of at most this many).
_FIRST_BATCH_ITEMS = 16


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
    data: bytes


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


def serialize_outputs(outputs: PortItems, max_bytes: int | None = None) -> EncodedOutputs:
    """The outputs encoded for storage (`EncodedOutputs`), checked as they are encoded: an
    output larger than `max_bytes` as JSON is a NodeError `NODE_OUTPUT_TOO_LARGE`, found as
    soon as the chunks encoded so far pass the limit (the rest is never encoded); a value
    that is not JSON, or an item nested past the JSON nesting limit, is a NodeError too
    (checked by the encoding itself: engine/json_depth.py). The executor names the node."""
    limit = max_bytes if max_bytes is not None else sys.maxsize
    chunks: list[OutputChunk] = []
    counts: dict[str, int] = {}
    raw_bytes = 1  # the braces around the ports, less the comma the first port does not have
    for port, items in outputs.items():
        # A comma, `"port":[` and `]`.
        raw_bytes += _key_bytes(port) + 4
        counts[port] = len(items)
        for chunk in _port_chunks(port, items):
            # A chunk's brackets are not stored in the document; a comma joins it to the last.
            raw_bytes += len(chunk.data) - 2 + (chunk.first > 0)
            if raw_bytes > limit:
                raise _too_large(raw_bytes, limit, port, chunk)
            chunks.append(chunk)
    raw_bytes += not counts  # `{}`: two braces and no port
    if raw_bytes > limit:  # ports without items, past a tiny limit
        raise _too_large(raw_bytes, limit, None, None)
    return EncodedOutputs(counts, chunks, raw_bytes)


@functools.lru_cache(maxsize=256)
def _key_bytes(port: str) -> int:
    """The size of a port's name as a JSON string (ports are few: their names recur)."""
    return len(orjson.dumps(port))


def _too_large(
    raw_bytes: int, max_bytes: int, port: str | None, chunk: OutputChunk | None
) -> NodeError:
    if port is None or chunk is None:
        return too_large(raw_bytes, max_bytes)
    last = chunk.first + chunk.count - 1
    items = f"item {last}" if chunk.count == 1 else f"items {chunk.first}-{last}"
    return too_large(raw_bytes, max_bytes, port, items)


def _port_chunks(port: str, items: list[Item]) -> Iterable[OutputChunk]:
    """The port's items in chunks of about `CHUNK_BYTES`. Items are encoded a chunk at a
    time (encoding each alone costs several times more for small items); how many go in the
    next chunk follows the size of the last ones, and a chunk that turns out much larger
    (an item far larger than those before it) is encoded again item by item."""
    if len(items) <= _FIRST_BATCH_ITEMS:  # most outputs: a few items, one chunk
        data = _encode(port, 0, items)
        if len(data) <= SPLIT_BYTES or len(items) == 1:
            return (OutputChunk(port, 0, len(items), data),)
        return _regrouped(port, 0, items)
    return _batches(port, items)


def _batches(port: str, items: list[Item]) -> Iterator[OutputChunk]:
    start, count = 0, _FIRST_BATCH_ITEMS
    while start < len(items):
        batch = items[start : start + count]
        data = _encode(port, start, batch)
        if len(data) > SPLIT_BYTES and len(batch) > 1:
            yield from _regrouped(port, start, batch)
        else:
            yield OutputChunk(port, start, len(batch), data)
        start += len(batch)
        per_item = max(len(data) // len(batch), 1)
        count = max(1, min(2 * len(batch), CHUNK_BYTES // per_item))


def _regrouped(port: str, start: int, batch: list[Item]) -> Iterator[OutputChunk]:
    """The batch's items encoded one by one, the small ones joined again into chunks. The
    batch's encoding checked them already (JSON, nesting): plain encoding is enough."""
    group: list[bytes] = []
    group_bytes = 0
    group_start = start
    for offset, item in enumerate(batch):
        data = orjson.dumps(item, option=_ORJSON_OPTIONS)
        if group and group_bytes + len(data) > CHUNK_BYTES:
            yield OutputChunk(port, group_start, len(group), b"[" + b",".join(group) + b"]")
            group, group_bytes = [], 0
        if not group:
            group_start = start + offset
        group.append(data)
        group_bytes += len(data) + 1
    if group:
        yield OutputChunk(port, group_start, len(group), b"[" + b",".join(group) + b"]")


def _encode(port: str, start: int, batch: list[Item]) -> bytes:
    try:
        # The batch's list holds the items: one level above an item's own.
        return encode(batch, ITEM_DEPTH + 1, _ORJSON_OPTIONS)
    except JsonTooDeep:
        index = next(
            start + offset for offset, item in enumerate(batch) if nests_deeper(item, ITEM_DEPTH)
        )
        raise NodeError(
            f"output {port!r} item {index} holds JSON nested more than {MAX_JSON_DEPTH} "
            "levels deep (the limit)",
            error_type="NODE_OUTPUT_TOO_DEEP",
            details={"port": port, "item": index, "maxDepth": MAX_JSON_DEPTH},
        ) from None
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise NodeError(
            f"returned a value that is not JSON: {not_json_reason(exc)}",
            error_type="NODE_OUTPUT_INVALID",
        ) from exc


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


def preview(
    items: list[Item],
    encoded: EncodedOutputs | None,
    input_bytes: int | None,
    output_bytes: int | None = None,
) -> Any:
    """The first item if it is small, for live events; None otherwise. Its size comes from
    its encoding (or, for the execution input passed on, from the input's; for an output
    stored before, from that output's size, `output_bytes`, when it is small or holds that
    item alone): a large first item is not encoded again just to find that it is large."""
    if not items:
        return None
    size = encoded.first_item_bytes() if encoded is not None else None
    if size is None and input_bytes is not None:
        size = (input_bytes, True)
    if size is None and output_bytes is not None:
        # `{"port":[item]}` holds the item and a few bytes more (a port's name).
        size = (output_bytes, output_bytes > PREVIEW_MAX_BYTES + 512)
    if size is not None:
        item_bytes, exact = size
        if item_bytes <= PREVIEW_MAX_BYTES:
            return items[0]
        if exact:
            return None
    # It shares its chunk (of at most `SPLIT_BYTES`), or nothing says how large it is.
    encoded_item = orjson.dumps(items[0], option=_ORJSON_OPTIONS)
    return items[0] if len(encoded_item) <= PREVIEW_MAX_BYTES else None
