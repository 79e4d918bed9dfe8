"""The worker's one-round-trip take of due jobs (engine/queue.py), on the real test Redis:
every job runs exactly once across competing workers, no worker goes past its slots, jobs
in progress elsewhere and jobs not yet due are left alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import func

from engine.queue import _Worker

pytestmark = pytest.mark.redis


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    redis = await create_pool(RedisSettings.from_dsn(redis_url))
    yield redis
    await redis.aclose()


class Recorder:
    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.started: dict[str, float] = {}
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    async def job(self, ctx: dict[str, Any], name: str) -> None:
        worker = ctx["name"]
        self.runs[name] += 1
        self.started[name] = time.monotonic()
        self.running[worker] += 1
        self.peak[worker] = max(self.peak[worker], self.running[worker])
        await asyncio.sleep(0.01)  # a job that lasts a moment, so that the slots fill up
        self.running[worker] -= 1


def _worker(pool: ArqRedis, queue: str, recorder: Recorder, name: str, slots: int) -> _Worker:
    return _Worker(
        functions=[func(recorder.job, name="job")],
        queue_name=queue,
        redis_pool=pool,
        max_jobs=slots,
        poll_delay=0.005,
        keep_result=0,
        handle_signals=False,
        ctx={"name": name},
    )


async def _stop(workers: list[_Worker], tasks: list[asyncio.Task[None]]) -> None:
    """As `loom worker` stops: take nothing more and let running jobs end. Each poll loop then
    ends by itself (arq's burst mode, with no job left to start), never in the middle of a
    Redis command, which a cancellation would cut off, leaving its connection behind."""
    for worker in workers:
        worker.allow_pick_jobs = False
        worker.burst = True
        worker.max_burst_jobs = 0
    await asyncio.gather(*tasks)


async def _until(condition: Any, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_competing_workers_run_each_job_once_within_their_slots(pool: ArqRedis) -> None:
    queue = f"loom:test-queue:{uuid.uuid4().hex}"
    recorder = Recorder()
    workers = [_worker(pool, queue, recorder, f"w{i}", slots=3) for i in range(3)]
    tasks = [asyncio.create_task(worker.async_run()) for worker in workers]
    try:
        names = [f"job-{i}-{uuid.uuid4().hex}" for i in range(60)]
        for name in names:
            await pool.enqueue_job("job", name, _job_id=name, _queue_name=queue)
        await _until(lambda: len(recorder.runs) == len(names))
        # Every job finished and left the queue: none can run a second time after this.
        await _until(lambda: all(not worker.tasks for worker in workers))
        assert await pool.zcard(queue) == 0
        assert recorder.runs == Counter(dict.fromkeys(names, 1))
        assert max(recorder.peak.values()) <= 3
        assert len(recorder.peak) > 1, "the jobs were shared between the workers"
    finally:
        await _stop(workers, tasks)


async def test_jobs_in_progress_elsewhere_or_not_due_are_left_alone(pool: ArqRedis) -> None:
    queue = f"loom:test-queue:{uuid.uuid4().hex}"
    recorder = Recorder()
    # Job ids are global in arq: unique ones per run.
    held, later, now = (f"{name}-{uuid.uuid4().hex}" for name in ("held", "later", "now"))
    # Another process holds this job.
    assert await pool.enqueue_job("job", "held", _job_id=held, _queue_name=queue)
    await pool.psetex(in_progress_key_prefix + held, 60_000, b"1")
    assert await pool.enqueue_job("job", "later", _job_id=later, _queue_name=queue, _defer_by=0.5)
    deferred_at = time.monotonic()
    assert await pool.enqueue_job("job", "now", _job_id=now, _queue_name=queue)
    worker = _worker(pool, queue, recorder, "w", slots=5)
    task = asyncio.create_task(worker.async_run())
    try:
        await _until(lambda: "later" in recorder.runs)
        assert recorder.started["later"] - deferred_at >= 0.45
        assert "held" not in recorder.runs
        assert recorder.runs["now"] == 1
        # Freed (its holder died and the sweeper cleared it): taken on a later poll.
        await pool.delete(in_progress_key_prefix + held)
        await _until(lambda: "held" in recorder.runs)
    finally:
        await _stop([worker], [task])
        await pool.delete(in_progress_key_prefix + held)


async def _command_counts(pool: ArqRedis) -> Counter[str]:
    stats = await pool.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


async def test_one_poll_is_one_round_trip_however_many_jobs_run_elsewhere(
    pool: ArqRedis,
) -> None:
    """arq's own start_jobs spent four round trips on every id it read (watch, exists, score,
    transaction), including the jobs other workers were running."""
    queue = f"loom:test-queue:{uuid.uuid4().hex}"
    recorder = Recorder()
    held = [f"held-{i}-{uuid.uuid4().hex}" for i in range(20)]
    for job_id in held:
        await pool.enqueue_job("job", job_id, _job_id=job_id, _queue_name=queue)
        await pool.psetex(in_progress_key_prefix + job_id, 60_000, b"1")
    free = f"free-{uuid.uuid4().hex}"
    await pool.enqueue_job("job", free, _job_id=free, _queue_name=queue)
    worker = _worker(pool, queue, recorder, "w", slots=5)
    try:
        ids = await pool.zrangebyscore(queue, min=float("-inf"), max=float("inf"))
        before = await _command_counts(pool)
        await worker.start_jobs(ids)
        after = await _command_counts(pool)
        await asyncio.gather(*worker.tasks.values())
    finally:
        await pool.delete(*(in_progress_key_prefix + job_id for job_id in held))
    assert recorder.runs == Counter({free: 1})
    spent = after - before - Counter(info=1)  # the second INFO itself
    # One command from the client (Redis also counts the script's own calls, which cost no
    # round trip): no WATCH, no per-id checks.
    assert spent == Counter({"evalsha": 1, "exists": 21, "zscore": 1, "psetex": 1})
