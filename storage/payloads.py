"""Node outputs at rest: JSON bytes compressed with zstd. NUL-safe (JSON escapes it)."""

from __future__ import annotations

import threading

import zstandard

ENCODING = "zstd+json"
# Payloads stored by reference instead of again (see storage/executions.py): a node run's
# output that is the execution input as the one item on a port (data: the port), and an
# execution output that is the items of a node run's port (data: JSON, node run and port).
INPUT_REFERENCE = "ref:input"
RUN_REFERENCE = "ref:node-run"
# Level 1: about as fast as copying on this hardware, and 5-10x smaller for typical items.
_LEVEL = 1


# zstd (de)compressor objects are not thread-safe, and compression also runs in worker
# threads: one pair per thread.
_local = threading.local()


def compress(raw: bytes) -> bytes:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=_LEVEL)
    data: bytes = compressor.compress(raw)
    return data


def decompress(data: bytes, encoding: str) -> bytes:
    if encoding != ENCODING:
        raise ValueError(f"unknown payload encoding {encoding!r}")
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    raw: bytes = decompressor.decompress(data)
    return raw
