"""What a Loom process shows of itself: its heartbeat (always) and its Prometheus metrics
(when configured).

Metrics are off unless `LOOM_METRICS_TOKEN` or `LOOM_METRICS_PORT` is set, and never open on
the API port: there `/metrics` exists only with a token, and answers 401 without it. A metrics
port (`LOOM_METRICS_PORT`, on `LOOM_METRICS_HOST`) is served from a thread of its own, so a
scrape is answered even while the event loop is held; it asks for the token too when one is
set. `loom worker` has no API port: its metrics need `LOOM_METRICS_PORT` (a different one per
worker process on one machine). Gauges that need the database are sampled in the background
every `LOOM_METRICS_SAMPLE_S`, never by a scrape, and by API processes only (the database is
shared: workers would multiply them).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import TYPE_CHECKING, Any

from engine import metrics
from server.settings import InvalidSettingsError, Settings
from storage import retention
from storage.db import Database
from storage.system_status import Heartbeats, execution_counts

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from starlette.requests import Request
    from starlette.responses import Response

logger = logging.getLogger("loom.observability")

ROLE_API = "api"
ROLE_WORKER = "worker"
_REFUSAL = "a bearer token is required (LOOM_METRICS_TOKEN)\n"


def loom_version() -> str:
    """The installed version of Loom (`loom-server`)."""
    try:
        return metadata.version("loom-server")
    except metadata.PackageNotFoundError:
        return "unknown"


def _authorized(header: str | None, token: str | None) -> bool:
    if token is None:
        return True
    return hmac.compare_digest((header or "").encode(), f"Bearer {token}".encode())


class Observability:
    """One process's heartbeat, metrics sampler and metrics port; `start` and `stop` them
    on its event loop."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        role: str,
        metrics_server: WSGIServer | None = None,
    ) -> None:
        """`metrics_server`: the metrics port already bound by `listen` (`loom serve` binds
        it before uvicorn starts, so that a port in use is a one-line error)."""
        self.settings = settings
        self.database = database
        self.role = role
        self.token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        # The API port serves /metrics with a token; a worker has only the metrics port.
        on_api_port = role == ROLE_API and self.token is not None
        self.metrics_on = on_api_port or settings.metrics_port is not None
        self.heartbeats = Heartbeats(
            database, role, loom_version(), settings.heartbeat_s, settings.heartbeat_forget_s
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._server = metrics_server if self.metrics_on else None
        self._serving = False
        self.samples = 0
        if self.metrics_on:
            metrics.enable(role, loom_version(), workflow_labels=settings.metrics_workflow_labels)
            if metrics.record_pruned not in retention.PRUNED_LISTENERS:
                retention.PRUNED_LISTENERS.append(metrics.record_pruned)

    async def start(self) -> None:
        if self.metrics_on and self._server is None and self.settings.metrics_port is not None:
            self._server = await asyncio.to_thread(listen, self.settings)
        if self._server is not None:
            _serve_in_thread(self._server)
            self._serving = True
        # The first heartbeat is written before the process serves: it is listed at once.
        await self.heartbeats.try_beat()
        self._tasks.append(asyncio.create_task(self.heartbeats.run(), name="heartbeat"))
        # The database's gauges: sampled by API processes only (the database is shared).
        if self.metrics_on and self.role == ROLE_API:
            self._tasks.append(asyncio.create_task(self._sample_forever(), name="metrics sampler"))

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics are served on (the one picked, for `LOOM_METRICS_PORT=0`)."""
        return None if self._server is None else self._server.server_port

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            server, self._server = self._server, None
            if self._serving:
                await asyncio.to_thread(server.shutdown)
            self._serving = False
            server.server_close()

    async def sample(self) -> None:
        """Read the executions' counts into the gauges (one indexed query)."""
        async with self.database.session() as session:
            counts = await execution_counts(session)
        oldest = counts.oldest_queued_at
        metrics.execution_counts(
            counts.queued,
            None if oldest is None else oldest.timestamp(),
            counts.running,
            counts.waiting,
        )
        self.samples += 1

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:
                metrics.sample_failed()
                logger.warning("sampling the executions for metrics failed", exc_info=True)
            await asyncio.sleep(self.settings.metrics_sample_s)

    async def endpoint(self, request: Request) -> Response:
        """`/metrics` on the API port (mounted only when a token is set)."""
        from starlette.responses import PlainTextResponse, Response

        registry = metrics.registry()
        if registry is None:
            return PlainTextResponse("metrics are off\n", status_code=404)
        if not _authorized(request.headers.get("authorization"), self.token):
            return PlainTextResponse(
                _REFUSAL, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        # Off the event loop: a scrape's text takes milliseconds.
        text = await asyncio.to_thread(generate_latest, registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


def listen(settings: Settings) -> WSGIServer:
    """Bind the metrics port (`LOOM_METRICS_PORT` on `LOOM_METRICS_HOST`), not serving yet;
    a port or host that cannot be used is an `InvalidSettingsError` naming the setting."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    host, port = settings.metrics_host, settings.metrics_port
    assert port is not None
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    exposition: list[Callable[..., Iterable[bytes]]] = []

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not _authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
            )
            return [_REFUSAL.encode()]
        if not exposition:  # the registry exists once the process's metrics are enabled
            registry = metrics.registry()
            assert registry is not None
            exposition.append(make_wsgi_app(registry))
        result: Iterable[bytes] = exposition[0](environ, start_response)
        return result

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not logged."""

    if token is None and host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning(
            "metrics on %s:%d are served to anyone who can reach it: set LOOM_METRICS_TOKEN",
            host,
            port,
        )
    try:
        return make_server(host, port, guarded, ThreadingWSGIServer, handler_class=Quiet)
    except OSError as exc:
        raise InvalidSettingsError(
            f"LOOM_METRICS_PORT={port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "see also LOOM_METRICS_HOST"
        ) from exc


def _serve_in_thread(server: WSGIServer) -> None:
    """Serve the bound metrics port from a daemon thread (prometheus_client's server, behind
    the token check), so a scrape is answered even while the event loop is held."""
    import threading

    thread = threading.Thread(target=server.serve_forever, name="loom-metrics", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    logger.info("metrics on http://%s:%d/metrics", host, port)
