"""`loom worker`: runs executions from the arq queue (distributed mode).

What the process holds: a group-commit writer, a lease keeper thread, a plan cache, the arq
worker polling Redis, a sweeper (active in one worker at a time), and a listener for
cancellations. Nothing else: any number of workers run side by side on any machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial
from typing import Any

from engine import metrics
from engine.executor import LEASE_LOST, SHUTDOWN
from engine.lifecycle import ExecutionLifecycle
from engine.loop_monitor import LoopMonitor
from engine.node_types import load_registry
from engine.plan import PlanCache
from engine.queue import (
    ArqSubmitter,
    Sweeper,
    build_worker,
    connect,
    listen_for_cancels,
    process_owner,
)
from engine.redis_bus import RedisEventPublisher
from engine.runner import ExecutionRunner
from server.observability import ROLE_WORKER, Observability
from server.running import require_distributed_settings
from server.scheduler import run_scheduler, start_pruning
from server.settings import Settings
from storage.execution_source import DatabaseExecutionSource
from storage.leases import LeaseKeeper
from storage.lifecycle_store import DatabaseExecutionStore
from storage.migrate import upgrade
from storage.node_type_definitions import DeclaredNodeTypes
from storage.recorder import GroupCommitWriter

logger = logging.getLogger("loom.worker")


async def run_worker(settings: Settings, concurrency: int) -> None:
    redis_url = require_distributed_settings(settings)
    database = settings.database()
    await upgrade(database)
    owner = process_owner()
    writer = GroupCommitWriter(database)
    await writer.start()
    keeper = LeaseKeeper(database, owner, settings.lease_seconds)
    keeper.start()
    redis = await connect(redis_url)
    submitter = ArqSubmitter(redis)
    # Committed events go to every API process's subscribers through Redis.
    publisher = RedisEventPublisher(redis)
    publisher.start()
    writer.on_commit(publisher.publish)

    # Executions this worker creates (fired schedules, sub-workflow calls) start through it.
    registry = load_registry()
    policies = settings.node_type_policies(database, registry)
    await policies.reload()
    lifecycle = ExecutionLifecycle(DatabaseExecutionStore(database, writer, policies), submitter)
    runner = ExecutionRunner(
        DatabaseExecutionSource(database, writer, owner, settings.lease_seconds),
        writer,
        registry,
        plan_cache=PlanCache(max_entries=settings.plan_cache_size),
        max_concurrency=settings.max_node_concurrency,
        leases=keeper,
        on_finished=lifecycle.after_run,
        durable_wait_s=settings.durable_wait_s,
        max_node_output_bytes=settings.max_node_output_bytes,
        save_defaults=settings.save_defaults(),
        resources=settings.node_resources(
            database, settings.secret_box(), lifecycle.start_calls, writer, policies
        ),
        expression_limits=settings.expression_limits(),
        workspace_node_types=DeclaredNodeTypes(database, registry).for_workspace,
    )
    writer.on_fence_lost(lambda execution_id: runner.interrupt(execution_id, LEASE_LOST))
    sweeper = Sweeper(
        redis,
        submitter,
        partial(lifecycle.to_sweep, max(2.0, settings.sweep_interval_s)),
        owner,
        settings.sweep_interval_s,
    )
    worker = build_worker(
        redis, runner, submitter, concurrency=concurrency, poll_delay_s=settings.poll_delay_s
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    monitor = LoopMonitor(settings.loop_stall_s)
    observability = Observability(settings, database, ROLE_WORKER)
    metrics.watch_leases(lambda: len(keeper.held()))
    await observability.start()
    background = [
        asyncio.create_task(monitor.run(), name="loop monitor"),
        asyncio.create_task(worker.main(), name="arq worker"),
        asyncio.create_task(sweeper.run_forever(), name="sweeper"),
        asyncio.create_task(listen_for_cancels(redis, runner), name="cancel listener"),
        asyncio.create_task(run_scheduler(lifecycle.fire_schedules), name="scheduler"),
        start_pruning(database, settings),
        asyncio.create_task(policies.keep_fresh(), name="node type policies"),
    ]
    logger.info(
        "worker %s: concurrency %d, lease %.0f s", owner, concurrency, settings.lease_seconds
    )
    print(f"Loom worker {owner} ready (concurrency {concurrency})", flush=True)
    try:
        await stop.wait()
    finally:
        await _shut_down(worker, runner, settings.shutdown_grace_s)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await observability.stop()
        await writer.stop()
        await publisher.stop()
        if runner.resources is not None:
            await runner.resources.close()
        keeper.stop()
        with contextlib.suppress(Exception):
            await redis.delete(worker.health_check_key)
            await redis.aclose()
        await database.dispose()
        logger.info("worker %s stopped", owner)


async def _shut_down(worker: Any, runner: ExecutionRunner, grace_s: float) -> None:
    """Stop taking jobs; let running nodes finish for up to `grace_s`; interrupt the rest
    (their attempts are recorded WORKER_LOST); every execution not finished is released and
    handed back to the queue for another worker."""
    worker.allow_pick_jobs = False
    runner.drain()
    jobs = [task for task in worker.tasks.values() if not task.done()]
    if jobs:
        await asyncio.wait(jobs, timeout=grace_s)
    for execution_id in runner.running():
        runner.interrupt(execution_id, SHUTDOWN)
    jobs = [task for task in worker.tasks.values() if not task.done()]
    if jobs:
        await asyncio.wait(jobs, timeout=10)
