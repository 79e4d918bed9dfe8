"""The ASGI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from engine import metrics
from engine.bus import EventFanout, EventPublisher, LocalPublisher
from engine.lifecycle import ExecutionLifecycle
from engine.loop_monitor import monitoring
from engine.node_types import NodeTypeRegistry, load_registry
from engine.nodes.webhook import METHODS
from engine.plan import PlanCache
from engine.runner import ExecutionRunner
from engine.submitter import InProcessSubmitter, Submitter
from engine.validation import GraphLimits
from resolvers import mapping
from resolvers.auth import Authenticator
from resolvers.context import Services
from resolvers.live_reads import LiveReads
from resolvers.updates_feed import UpdatesFeed
from schema.root import build_schema
from server import graphiql, telemetry
from server.graphql_view import LoomGraphQL
from server.middleware import BodySizeLimit
from server.observability import ROLE_API, Observability
from server.running import require_distributed_settings
from server.scheduler import run_scheduler, start_pruning
from server.settings import Settings
from server.webhooks import WebhookEndpoint
from server.websocket_writes import FrameWriters
from storage.credentials import DatabaseCredentials
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.lifecycle_store import DatabaseExecutionStore
from storage.node_type_definitions import DeclaredNodeTypes
from storage.recorder import GroupCommitWriter
from storage.starts import EmbeddedStarts
from storage.webhooks import RouteCache

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from redis.asyncio import Redis

    from engine.redis_bus import RedisEventPublisher

logger = logging.getLogger("loom.server")
# Embedded mode has one process: its claims never need to expire while it lives (a restart
# takes every lease over, see `expire_leases`).
EMBEDDED_LEASE_S = 10 * 365 * 24 * 3600.0


def build_services(
    settings: Settings,
    database: Database,
    registry: NodeTypeRegistry | None = None,
    writer: GroupCommitWriter | None = None,
    publisher: EventPublisher | None = None,
    fanout: EventFanout | None = None,
) -> Services:
    """The per-process dependencies of the resolvers. Embedded mode runs executions here;
    distributed mode (`LOOM_REDIS_URL`) hands them to the queue."""
    registry = registry if registry is not None else load_registry()
    policies = settings.node_type_policies(database, registry)
    plan_cache = PlanCache(max_entries=settings.plan_cache_size)
    fanout = fanout or EventFanout(
        capacity=settings.subscription_buffer,
        max_subscriptions=settings.max_subscriptions,
        shared=mapping.event,
    )
    secret_box = settings.secret_box()
    submitter: Submitter
    starts: EmbeddedStarts | None = None
    # Every event of this process is committed and published by its one writer: in
    # distributed mode, the creations and cancellations the API makes.
    writer = writer or GroupCommitWriter(database)
    if publisher is None and not settings.redis_url:
        publisher = LocalPublisher(fanout)
    if publisher is not None:
        writer.on_commit(publisher.publish)
    # A writer nobody listens to publishes nothing: live events would go missing silently.
    assert writer.listening, "the process's writer has no commit listener"
    if settings.redis_url:
        from engine.queue import ArqSubmitter  # arq and Redis: distributed mode only

        submitter = ArqSubmitter(url=settings.redis_url)
    else:
        source = DatabaseExecutionSource(database, writer, lease_s=EMBEDDED_LEASE_S)
        runner = ExecutionRunner(
            source,
            writer,
            registry,
            plan_cache=plan_cache,
            max_concurrency=settings.max_node_concurrency,
            durable_wait_s=settings.durable_wait_s,
            max_node_output_bytes=settings.max_node_output_bytes,
            save_defaults=settings.save_defaults(),
            # Sub-workflow calls start through the lifecycle (made below).
            resources=settings.node_resources(
                database,
                secret_box,
                lambda requests: lifecycle.start_calls(requests),
                writer,
                policies,
            ),
            expression_limits=settings.expression_limits(),
            workspace_node_types=DeclaredNodeTypes(database, registry).for_workspace,
        )
        submitter = InProcessSubmitter(runner)
        starts = EmbeddedStarts(source, submitter, writer)
    lifecycle = ExecutionLifecycle(
        DatabaseExecutionStore(database, writer, policies), submitter, starts
    )
    if isinstance(submitter, InProcessSubmitter):
        submitter.runner.on_finished = lifecycle.after_run
    live_reads = LiveReads(
        database,
        max_connections=settings.subscription_db_connections,
        retry_s=settings.subscription_retry_s,
    )
    return Services(
        database=database,
        registry=registry,
        authenticator=Authenticator(database, cache_s=settings.token_cache_s),
        live_reads=live_reads,
        updates_feed=UpdatesFeed(fanout, live_reads),
        graph_limits=GraphLimits(
            max_nodes=settings.max_graph_nodes, max_pinned_bytes=settings.max_pinned_bytes
        ),
        max_page_size=settings.max_page_size,
        submitter=submitter,
        plan_cache=plan_cache,
        fanout=fanout,
        publisher=publisher,
        secret_box=secret_box,
        webhook_routes=RouteCache(ttl_s=settings.webhook_route_cache_s),
        starts=starts,
        policies=policies,
        expression_limits=settings.expression_limits(),
        lifecycle=lifecycle,
    )


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    registry: NodeTypeRegistry | None = None,
    metrics_server: WSGIServer | None = None,
) -> Starlette:
    """Build Loom's ASGI app. The database schema must already be migrated (`loom serve`
    and `loom db upgrade` do that). `metrics_server`: the metrics port, bound beforehand by
    `server.observability.listen` (else it is bound when the app starts)."""
    settings = settings or Settings()
    if settings.redis_url:
        require_distributed_settings(settings)
    owns_database = database is None
    database = database or settings.database()
    writer = GroupCommitWriter(database)
    events_redis: Redis | None = None
    publisher: RedisEventPublisher | None = None
    if settings.redis_url:
        # Live events: this process reads every worker's from Redis, and announces the
        # events it commits itself (a cancellation of a queued execution).
        # Timeouts above the reader's 5 s block, so a half-open connection cannot hang it.
        from redis.asyncio import Redis

        from engine.redis_bus import RedisEventPublisher

        events_redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=15,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        publisher = RedisEventPublisher(events_redis)
    services = build_services(settings, database, registry, writer, publisher)
    assert services.fanout is not None
    fanout = services.fanout
    reader = None
    if events_redis is not None:
        from engine.redis_bus import RedisEventReader

        reader = RedisEventReader(events_redis, services.fanout)
    reading: asyncio.Task[None] | None = None
    submitter = services.submitter
    lifecycle = services.lifecycle
    assert lifecycle is not None
    schema = build_schema(
        max_depth=settings.max_query_depth,
        max_tokens=settings.max_query_tokens,
        max_aliases=settings.max_query_aliases,
    )
    graphql = LoomGraphQL(
        schema,
        services,
        graphql_ide="graphiql" if settings.graphiql else None,
        allowed_origins=settings.allowed_origins,
        legacy_ws=settings.graphql_ws_legacy,
        keepalive_s=settings.ws_keepalive_s,
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
    )

    observability = Observability(settings, database, ROLE_API, metrics_server)
    metrics.watch_subscriptions(lambda: fanout.subscriptions)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await database.ping()
            checks["database"] = "ok"
        except Exception as exc:
            logger.warning("readiness: database unreachable: %s", exc)
            checks["database"] = "unreachable"
        if settings.redis_url:
            checks["redis"] = await _ping_redis(settings.redis_url)
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    scheduling: asyncio.Task[None] | None = None
    refreshing: asyncio.Task[None] | None = None
    pruning: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with monitoring(settings.loop_stall_s) as monitor:
            app.state.loop_monitor = monitor
            async with serving():
                await observability.start()
                try:
                    yield
                finally:
                    await observability.stop()

    @asynccontextmanager
    async def serving() -> AsyncIterator[None]:
        nonlocal reading, scheduling, refreshing, pruning
        if services.policies is not None:
            await services.policies.reload()
            refreshing = asyncio.create_task(
                services.policies.keep_fresh(), name="node type policies"
            )
        if reader is not None and publisher is not None:
            publisher.start()
            reading = asyncio.create_task(reader.run_forever(), name="live event reader")
        if isinstance(submitter, InProcessSubmitter):
            await writer.start()
            # Embedded mode: executions that were queued or running when the process stopped
            # run again; nodes that succeeded are not repeated.
            await lifecycle.resume_on_start()
            # Schedules fire here in embedded mode (in the workers in distributed mode).
            scheduling = asyncio.create_task(
                run_scheduler(lifecycle.fire_schedules), name="scheduler"
            )
            pruning = start_pruning(database, settings)
        try:
            yield
        finally:
            for task in (scheduling, refreshing, pruning):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if isinstance(submitter, InProcessSubmitter):
                await submitter.close()
                await writer.stop()
                resources = submitter.runner.resources
                if resources is not None:
                    await resources.close()
            elif settings.redis_url:
                from engine.queue import ArqSubmitter

                assert isinstance(submitter, ArqSubmitter)
                await submitter.close()
            if reading is not None and publisher is not None and events_redis is not None:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
                await publisher.stop()
                await events_redis.aclose()
            if owns_database:
                await database.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route(
                "/webhook/{path:path}",
                WebhookEndpoint(
                    services,
                    None
                    if services.secret_box is None
                    else DatabaseCredentials(database, services.secret_box),
                    settings.webhook_timeout_s,
                    settings.idempotency_key_ttl_hours,
                ),
                methods=list(METHODS),
            ),
            Route("/readyz", readyz),
            *([Route("/metrics", observability.endpoint)] if observability.token else []),
            *([graphiql.assets_route()] if settings.graphiql else []),
        ],
        middleware=[
            *telemetry.middleware(settings),
            Middleware(FrameWriters),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.settings = settings
    app.state.observability = observability
    return app


async def _ping_redis(url: str) -> str:
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
        return "ok"
    except Exception as exc:
        logger.warning("readiness: redis unreachable: %s", exc)
        return "unreachable"
    finally:
        await client.aclose()
