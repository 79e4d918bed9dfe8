"""Node outputs at rest: JSON compressed with zstd. NUL-safe (JSON escapes it).

Two encodings:

- `ENCODING` (zstd+json): one zstd frame of a whole JSON value. Execution inputs, and node
  outputs stored before outputs were chunked.
- `CHUNKED` (zstd+chunks): a node output as its encoder chunked it (engine/outputs.py), each
  chunk (a JSON array of consecutive items of one port) a zstd frame of its own, after an
  index that says where each chunk is. A reader takes the index and the frames a page needs,
  and decodes nothing else (storage/output_reads.py)::

      4 bytes   length of the index, big-endian
      index     JSON: {"ports": [[name, items], ...],
                       "chunks": [[port number, first item, items, JSON bytes, frame bytes], ...]}
      frames    one per chunk, in the index's order
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import orjson
import zstandard

from engine.nodes.base import Item, PortItems
from engine.outputs import EncodedOutputs, serialize_outputs

# What an execution's payload rows hold (`ExecutionPayload.kind`).
INPUT = "input"
OUTPUT = "output"

ENCODING = "zstd+json"
CHUNKED = "zstd+chunks"
# Payloads stored by reference instead of again (see storage/payload_store.py): a node run's
# output that is the execution input as the one item on a port (data: the port), and an
# execution output that is the items of a node run's port (data: JSON, node run and port).
INPUT_REFERENCE = "ref:input"
RUN_REFERENCE = "ref:node-run"
# Level 1: about as fast as copying on this hardware, and 5-10x smaller for typical items.
_LEVEL = 1
_LENGTH_BYTES = 4


# zstd (de)compressor objects are not thread-safe, and compression also runs in worker
# threads: one pair per thread.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=_LEVEL)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def compress(raw: bytes) -> bytes:
    data: bytes = _compressor().compress(raw)
    return data


def decompress(data: bytes, encoding: str) -> bytes:
    if encoding != ENCODING:
        raise ValueError(f"unknown payload encoding {encoding!r}")
    return decompress_frame(data)


def decompress_frame(frame: bytes | memoryview) -> bytes:
    raw: bytes = _decompressor().decompress(frame)
    return raw


def frame_prefix(frame: bytes | memoryview, length: int) -> bytes:
    """The first `length` bytes a frame decompresses to (fewer if it holds fewer), without
    decompressing the rest; `frame` may be cut short after them (see `prefix_frame_bytes`)."""
    reader = _decompressor().stream_reader(frame)
    parts: list[bytes] = []
    wanted = length
    while wanted > 0:
        part = reader.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


# zstd stores a block that does not compress as it is, behind a 3-byte header, and a block
# holds at most 128 KiB: a frame's first N + this many bytes hold its first N bytes
# decompressed, whatever the data.
PREFIX_SLACK_BYTES = 128 * 1024 + 64


def prefix_frame_bytes(length: int) -> int:
    """How many bytes of a frame to read to decompress its first `length` bytes."""
    return length + PREFIX_SLACK_BYTES


def decode(data: bytes, encoding: str) -> Any:
    """A stored value, decoded whole: a node output is a JSON object of ports."""
    if encoding == CHUNKED:
        return decode_chunked(data)
    return orjson.loads(decompress(data, encoding))


def pack(encoded: EncodedOutputs) -> bytes:
    """A node output in the `CHUNKED` encoding."""
    compressor = _compressor()
    port_numbers = {port: number for number, port in enumerate(encoded.ports)}
    frames = [compressor.compress(chunk.data) for chunk in encoded.chunks]
    index = orjson.dumps(
        {
            "ports": list(encoded.ports.items()),
            "chunks": [
                [port_numbers[chunk.port], chunk.first, chunk.count, len(chunk.data), len(frame)]
                for chunk, frame in zip(encoded.chunks, frames, strict=True)
            ],
        }
    )
    return b"".join([len(index).to_bytes(_LENGTH_BYTES, "big"), index, *frames])


@dataclass(frozen=True, slots=True)
class Chunk:
    """Where one chunk is: its items, its size as JSON and its frame's place in the data."""

    first: int
    count: int
    raw_bytes: int
    start: int  # of its frame, in the stored data
    size: int  # of its frame


@dataclass(frozen=True, slots=True)
class ChunkIndex:
    """The index of a `CHUNKED` payload: ports in order, and each port's chunks."""

    ports: list[tuple[str, int]]
    chunks: dict[str, list[Chunk]]

    @staticmethod
    def length(head: bytes) -> int:
        """How many bytes from the start of the data the index ends at."""
        return _LENGTH_BYTES + int.from_bytes(head[:_LENGTH_BYTES], "big")

    @classmethod
    def parse(cls, head: bytes) -> ChunkIndex:
        """The index, from the start of the data (at least `length(head)` bytes of it)."""
        end = cls.length(head)
        raw = orjson.loads(head[_LENGTH_BYTES:end])
        ports = [(str(name), int(count)) for name, count in raw["ports"]]
        chunks: dict[str, list[Chunk]] = {name: [] for name, _ in ports}
        start = end
        for port_number, first, count, raw_bytes, size in raw["chunks"]:
            chunks[ports[port_number][0]].append(Chunk(first, count, raw_bytes, start, size))
            start += size
        return cls(ports, chunks)

    def chunk_at(self, port: str, item: int) -> int:
        """The position, among the port's chunks, of the chunk that holds `item`."""
        firsts = [chunk.first for chunk in self.chunks[port]]
        return max(bisect_right(firsts, item) - 1, 0)


def decode_chunked(data: bytes) -> PortItems:
    """A `CHUNKED` node output, decoded whole (a frame at a time)."""
    index = ChunkIndex.parse(data)
    view = memoryview(data)
    outputs: PortItems = {}
    for port, _ in index.ports:
        items = outputs[port] = []
        for chunk in index.chunks[port]:
            frame = view[chunk.start : chunk.start + chunk.size]
            items.extend(orjson.loads(decompress_frame(frame)))
    return outputs


def encode_payload(value: Any) -> tuple[bytes, int]:
    """A JSON value compressed for storage, and its size before compression."""
    raw = orjson.dumps(value)
    return compress(raw), len(raw)


def encode_output(port: str, items: list[Item]) -> tuple[bytes, int]:
    """An execution output stored by value (`CHUNKED`, as the items of its port), and its
    size as JSON."""
    encoded = serialize_outputs({port: items})
    return pack(encoded), encoded.raw_bytes


def output_reference(node_run_id: str, port: str) -> bytes:
    """An execution output that is the items of a node run's port, stored by reference."""
    return orjson.dumps({"nodeRunId": node_run_id, "port": port})
