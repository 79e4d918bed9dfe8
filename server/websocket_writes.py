"""Shared `next` messages to a subscription's websocket: framed once, written together.

A subscriber of a busy process gets several messages at once (a round of execution
updates, a commit's events), most of them results shared by every subscriber with the same
selection (schema/sharing.py). Sent one by one through ASGI, each costs a system call and a
wake-up of the client, and its framing; that was most of a message's cost. So where the
server is uvicorn with its websockets-sansio protocol (what `loom serve` runs: uvicorn picks
it whenever the websockets library is installed), `FrameWriters` lends each websocket a
`FrameWriter` that writes several messages in one write, their frames built by the
websockets library once per shared result and operation id: to one more subscriber, a
message costs a few bytes joined to a write. Elsewhere, or with compression
(LOOM_WS_COMPRESSION), messages go one by one through ASGI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.utils import ClientDisconnected
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from resolvers.context import DirectSender
from schema.sharing import SharedResult, next_frame_head

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # another uvicorn: messages go one by one through ASGI
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]

FRAME_WRITER = "loom.frame_writer"


def text_frame(text: str) -> bytes:
    """A complete, unmasked text frame (what a server sends), without extensions."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


class FrameWriter:
    """Writes complete text frames to one uvicorn websockets-sansio connection, as its
    `send` writes one: after flow control lets it, while the connection is open."""

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, send: Send) -> FrameWriter | None:
        """The writer of the connection behind uvicorn's `send`; None for any other server."""
        protocol = getattr(send, "__self__", None)
        if WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        return cls(protocol)

    @property
    def frames_as_is(self) -> bool:
        """Whether frames built beforehand may go out as they are (no compression)."""
        return not self._protocol.conn.extensions

    async def write(self, frames: Sequence[bytes]) -> None:
        protocol = self._protocol
        await protocol.writable.wait()
        conn = protocol.conn
        if (
            protocol.disconnected
            or protocol.close_sent
            or conn.state is not State.OPEN
            or conn.expect_continuation_frame
        ):
            raise ClientDisconnected()
        protocol.transport.write(b"".join(frames))


class FrameWriters:
    """ASGI middleware, outermost: lends each websocket connection its `FrameWriter`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[FRAME_WRITER] = FrameWriter.of(send)
        await self.app(scope, receive, send)


def direct_sender(operation: Any, socket: WebSocket) -> DirectSender:
    """Sends shared results of one operation as `next` messages, without Strawberry's
    per-result machinery; False once the operation is over or the client gone."""
    head = next_frame_head(operation.id)
    writer: FrameWriter | None = socket.scope.get(FRAME_WRITER)

    async def send(results: Sequence[SharedResult]) -> bool:
        if operation.completed:
            return False
        try:
            if writer is not None and writer.frames_as_is:
                await writer.write([result.framed(head, text_frame) for result in results])
            else:
                for result in results:
                    await socket.send_text(head + result.json() + "}}")
        except (WebSocketDisconnect, OSError, RuntimeError):
            return False  # the connection is going; its handler cancels the operation
        return True

    return send
