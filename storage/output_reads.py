"""Reading stored outputs and inputs for the API: a page at a time, in bounded memory.

A read first takes the start of each payload (`HEAD_BYTES`: all of a small one, the index of
a chunked one), then only the frames a page needs, by byte range (`substr`, on both
databases). An item too large for a page is never decoded: its marker's preview comes from
the start of its frame. However large an output is, a page costs about its own size
(docs/api.md, "Large outputs"). Payloads stored before outputs were chunked, and values kept
in the executions row by the oldest releases, are decoded whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sqlalchemy import LargeBinary, func
from sqlmodel import col, select

from engine.output_pages import MemoryOutput, Page, PageBuilder, page_bounds
from engine.truncation import marker
from storage import payloads
from storage.db import Sessions, run_core
from storage.errors import NotFoundError
from storage.models import ExecutionPayload, NodeRunPayload
from storage.payloads import INPUT, OUTPUT, Chunk, ChunkIndex

# All of a small payload, and the index of a chunked output of about 100 MB.
HEAD_BYTES = 64 * 1024

# Reads `length` bytes of a stored payload from `start`.
Fetch = Callable[[int, int], Awaitable[bytes]]


class StoredOutput(Protocol):
    """Output items by port, read a page at a time."""

    def ports(self) -> list[tuple[str, int]]:
        """The ports in order, with how many items each holds."""
        ...

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page:
        """A page of the port's items (None: the first port with items)."""
        ...

    def items_bytes(self, port: str | None = None) -> int:
        """The size of the port's items as a JSON array (None: the first port with items),
        known without decoding them."""
        ...


@dataclass(slots=True)
class _Stored:
    """A stored payload: its start, and a way to read any range of the rest."""

    encoding: str
    size: int
    head: bytes
    fetch: Fetch

    async def read(self, start: int, length: int) -> bytes:
        length = min(length, self.size - start)
        if start + length <= len(self.head):
            return self.head[start : start + length]
        return await self.fetch(start, length)

    async def whole(self) -> bytes:
        return await self.read(0, self.size)


class StoredValue:
    """One JSON value stored alone (an execution input): decoded only when it fits."""

    def __init__(self, stored: _Stored, raw_bytes: int) -> None:
        self._stored = stored
        self.raw_bytes = raw_bytes  # its size as JSON

    async def value(self) -> Any:
        return orjson.loads(payloads.decompress_frame(await self._stored.whole()))

    async def prefix(self, length: int) -> bytes:
        """The first `length` bytes of its JSON, the rest neither read nor decoded."""
        wanted = payloads.prefix_frame_bytes(length)
        return payloads.frame_prefix(await self._stored.read(0, wanted), length)

    async def read(self, max_bytes: int) -> tuple[Any, bool]:
        """The value, or its truncation marker when it is larger than `max_bytes` as JSON;
        and whether it was truncated."""
        if self.raw_bytes <= max_bytes:
            return await self.value(), False
        return marker(await self.prefix(max_bytes), self.raw_bytes, max_bytes), True


def _first_port(ports: list[tuple[str, int]], port: str | None) -> str:
    if port is not None:
        return port
    return next((name for name, count in ports if count), ports[0][0] if ports else "main")


class _ChunkedOutput:
    """A `CHUNKED` payload: a page decodes only the frames it needs."""

    def __init__(self, stored: _Stored, index: ChunkIndex) -> None:
        self._stored = stored
        self._index = index

    def ports(self) -> list[tuple[str, int]]:
        return self._index.ports

    def items_bytes(self, port: str | None = None) -> int:
        chunks = self._index.chunks.get(_first_port(self._index.ports, port), [])
        # Each chunk is an array: its items, without brackets, joined by commas.
        return 2 + sum(chunk.raw_bytes - 2 for chunk in chunks) + max(len(chunks) - 1, 0)

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page:
        port = _first_port(self._index.ports, port)
        offset, limit = page_bounds(offset, limit)
        chunks = self._index.chunks.get(port, [])
        builder = PageBuilder(port, offset, limit, max_bytes, dict(self._index.ports).get(port, 0))
        frames: dict[int, bytes] = {}
        start = self._index.chunk_at(port, offset) if offset < builder.total else len(chunks)
        for position in range(start, len(chunks)):
            if builder.done:
                break
            chunk = chunks[position]
            size = chunk.raw_bytes - 2  # without its array's brackets
            if chunk.count == 1 and not builder.fits(size):
                if not builder.items:
                    builder.add_marker(await self._prefix(chunk, builder.room), size)
                builder.stop()
                break
            if position not in frames:
                items_left = builder.limit - len(builder.items) + max(offset - chunk.first, 0)
                frames = await self._frames(chunks, position, builder.room, items_left)
            items = orjson.loads(payloads.decompress_frame(frames.pop(position)))
            builder.add_all(items[max(offset - chunk.first, 0) :])
        return builder.page()

    async def _frames(
        self, chunks: list[Chunk], position: int, room: int, items_left: int
    ) -> dict[int, bytes]:
        """The frames of the chunks from `position` on that a page with `room` and
        `items_left` left may use, read in one range: while their items fit, and one more
        that may hold the page's end, unless it is an item too large to go in whole."""
        end = position + 1
        used, items = chunks[position].raw_bytes, chunks[position].count
        while end < len(chunks) and used <= room and items < items_left:
            following = chunks[end]
            if following.count == 1 and used + following.raw_bytes > room:
                break
            used += following.raw_bytes
            items += following.count
            end += 1
        first, last = chunks[position], chunks[end - 1]
        data = await self._stored.read(first.start, last.start + last.size - first.start)
        return {
            number: data[chunk.start - first.start : chunk.start - first.start + chunk.size]
            for number, chunk in enumerate(chunks[position:end], position)
        }

    async def _prefix(self, chunk: Chunk, length: int) -> bytes:
        """The start of a one-item chunk's item as JSON (after the array's `[`)."""
        wanted = min(chunk.size, payloads.prefix_frame_bytes(length + 1))
        frame = await self._stored.read(chunk.start, wanted)
        return payloads.frame_prefix(frame, length + 1)[1:]


class _InputOutput:
    """A node run's output that is the execution input, the one item on a port."""

    def __init__(self, port: str, value: StoredValue | None) -> None:
        self._port = port
        self._value = value

    def ports(self) -> list[tuple[str, int]]:
        return [(self._port, 1)]

    def items_bytes(self, port: str | None = None) -> int:
        if (port or self._port) != self._port:
            return 2
        return 2 + (self._value.raw_bytes if self._value is not None else 2)

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page:
        port = port or self._port
        offset, limit = page_bounds(offset, limit)
        total = 1 if port == self._port else 0
        builder = PageBuilder(port, offset, limit, max_bytes, total)
        if offset < total and self._value is None:  # the input is gone: an empty item
            builder.add({}, 2)
        elif offset < total and self._value is not None:
            size = self._value.raw_bytes
            if builder.fits(size):
                builder.add(await self._value.value(), size)
            else:
                builder.add_marker(await self._value.prefix(builder.room), size)
        return builder.page()


class _PortOutput:
    """One port of an output: an execution output is the items of a node run's port."""

    def __init__(self, output: StoredOutput, port: str) -> None:
        self._output = output
        self._port = port

    def ports(self) -> list[tuple[str, int]]:
        return [(self._port, dict(self._output.ports()).get(self._port, 0))]

    def items_bytes(self, port: str | None = None) -> int:
        return self._output.items_bytes(self._port)

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page:
        return await self._output.page(self._port, offset, limit, max_bytes)


def _head_columns(model: Any) -> tuple[Any, ...]:
    return (
        model.encoding,
        model.raw_bytes,
        func.length(model.data),
        func.substr(model.data, 1, HEAD_BYTES, type_=LargeBinary),
    )


def _fetcher(database: Sessions, model: Any, label: str, *where: Any) -> Fetch:
    async def fetch(start: int, length: int) -> bytes:
        query = select(func.substr(model.data, start + 1, length, type_=LargeBinary)).where(*where)
        async with database.session() as session:
            data = (await run_core(session, query)).scalar_one_or_none()
        if data is None:  # deleted since its start was read
            raise NotFoundError("stored payload", label)
        return bytes(data)

    return fetch


async def _output(stored: _Stored) -> StoredOutput:
    if stored.encoding == payloads.CHUNKED:
        index_end = ChunkIndex.length(stored.head)
        head = stored.head if index_end <= len(stored.head) else await stored.read(0, index_end)
        return _ChunkedOutput(stored, ChunkIndex.parse(head))
    return MemoryOutput(payloads.decode(await stored.whole(), stored.encoding))


async def node_run_outputs(database: Sessions, run_ids: Collection[str]) -> dict[str, StoredOutput]:
    """The stored outputs of these node runs, by run id (runs without one left out)."""
    model = NodeRunPayload
    query = select(model.node_run_id, model.execution_id, *_head_columns(model)).where(
        col(model.node_run_id).in_(run_ids)
    )
    async with database.session() as session:
        rows = (await run_core(session, query)).all()
    found: dict[str, StoredOutput] = {}
    input_ports: dict[str, tuple[str, str]] = {}
    for run_id, execution_id, encoding, _, size, head in rows:
        if encoding == payloads.INPUT_REFERENCE:
            input_ports[run_id] = (execution_id, bytes(head).decode())
            continue
        fetch = _fetcher(database, model, run_id, col(model.node_run_id) == run_id)
        found[run_id] = await _output(_Stored(encoding, size, bytes(head), fetch))
    if input_ports:
        inputs = await execution_inputs(database, {eid for eid, _ in input_ports.values()})
        for run_id, (execution_id, port) in input_ports.items():
            found[run_id] = _InputOutput(port, inputs.get(execution_id))
    return found


async def _execution_rows(
    database: Sessions, execution_ids: Collection[str], kind: str
) -> list[tuple[str, _Stored, int]]:
    model = ExecutionPayload
    query = select(model.execution_id, *_head_columns(model)).where(
        col(model.execution_id).in_(execution_ids), col(model.kind) == kind
    )
    async with database.session() as session:
        rows = (await run_core(session, query)).all()
    return [
        (
            execution_id,
            _Stored(
                encoding,
                size,
                bytes(head),
                _fetcher(
                    database,
                    model,
                    f"{kind} of {execution_id}",
                    col(model.execution_id) == execution_id,
                    col(model.kind) == kind,
                ),
            ),
            raw_bytes,
        )
        for execution_id, encoding, raw_bytes, size, head in rows
    ]


async def execution_inputs(
    database: Sessions, execution_ids: Collection[str]
) -> dict[str, StoredValue]:
    """The stored inputs of these executions, by execution id."""
    return {
        execution_id: StoredValue(stored, raw_bytes)
        for execution_id, stored, raw_bytes in await _execution_rows(database, execution_ids, INPUT)
    }


async def execution_outputs(
    database: Sessions, execution_ids: Collection[str]
) -> dict[str, StoredOutput]:
    """The stored outputs of these executions (the items of one port), by execution id."""
    found: dict[str, StoredOutput] = {}
    references: dict[str, tuple[str, str]] = {}
    for execution_id, stored, _ in await _execution_rows(database, execution_ids, OUTPUT):
        if stored.encoding == payloads.RUN_REFERENCE:
            reference = orjson.loads(stored.head)
            references[execution_id] = (reference["nodeRunId"], reference["port"])
        elif stored.encoding == payloads.CHUNKED:  # stored by value, one port
            found[execution_id] = await _output(stored)
        else:  # a list of items, stored before outputs were chunked
            items = payloads.decode(await stored.whole(), stored.encoding)
            found[execution_id] = MemoryOutput({"main": items})
    if references:
        runs = await node_run_outputs(database, [run_id for run_id, _ in references.values()])
        for execution_id, (run_id, port) in references.items():
            if run_id in runs:
                found[execution_id] = _PortOutput(runs[run_id], port)
    return found
