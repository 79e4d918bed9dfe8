"""For tests of traces: spans recorded in memory, and a remote API that records the headers
it is sent (the HTTP Request node's `traceparent`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from engine import tracing
from storage.db import Database, run_core
from tests.distributed.cluster import free_port


@contextlib.contextmanager
def spans_in_memory() -> Iterator[InMemorySpanExporter]:
    """This process records spans, in memory, inside."""
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider("api")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@contextlib.asynccontextmanager
async def recording_api() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A local API (`/` answers, `/unavailable` fails): its URL, and the headers of each
    request it was sent."""
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"ok": True})

    async def unavailable(_: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    server = web.Application()
    server.router.add_get("/", answer)
    server.router.add_get("/unavailable", unavailable)
    runner = web.AppRunner(server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/", seen
    finally:
        await runner.cleanup()


async def stored_traceparent(database: Database, execution_id: str) -> str | None:
    """The creator's context stored with an execution (`executions.traceparent`)."""
    async with database.session() as session:
        result = await run_core(
            session,
            text("SELECT traceparent FROM executions WHERE id = :id"),
            {"id": execution_id},
        )
        stored: str | None = result.scalar_one()
        return stored
