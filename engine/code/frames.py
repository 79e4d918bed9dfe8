"""The wire between a Loom process and its sandbox hosts: length-prefixed frames on the
host's stdin and stdout, and the exit codes that say why a host ended."""

from __future__ import annotations

import struct
from typing import IO

from engine.errors import EngineError

_LENGTH = struct.Struct(">I")
# The host answered a call that hit a limit and ended: its isolate is not used again.
EXIT_DISCARD = 3
# The host's watchdog ended it: its resident memory passed the limit.
EXIT_MEMORY = 4
# The host's watchdog ended it: a call was still running past its deadline.
EXIT_TIMEOUT = 5
# A frame is at most this large: a request or reply past it is refused before it is sent.
MAX_FRAME_BYTES = 1024 * 1024 * 1024


class FrameTooLarge(EngineError, ValueError):
    """A payload over `MAX_FRAME_BYTES`."""


def write_frame(stream: IO[bytes], *pieces: bytes | memoryview) -> None:
    """Write one frame, its payload given in pieces (the caller flushes)."""
    size = sum(len(piece) for piece in pieces)
    if size > MAX_FRAME_BYTES:
        raise FrameTooLarge(f"a frame of {size} bytes is over {MAX_FRAME_BYTES}")
    stream.write(_LENGTH.pack(size))
    for piece in pieces:
        stream.write(piece)


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame, or None when the other side closed the pipe (even mid-frame)."""
    header = _read_exactly(stream, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    return _read_exactly(stream, length)


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
