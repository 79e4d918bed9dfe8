"""The arq adapter: distributed mode's submitter, job, worker, sweeper and cancel channel.

The executor never imports arq; this module is the only one that does, behind Loom's own
`Submitter` interface, so that the queue could be swapped (arq is in maintenance mode).

- A job carries only an execution id and the lease generation it expects to claim; its job
  id is `<execution id>:<generation>`, unique per claim, because arq keeps a job id locked
  while its in-progress key lives (its job timeout plus 10 s after a `kill -9`). A job whose
  execution was claimed since it was enqueued does nothing.
- Jobs are JSON (orjson), not pickle; arq keeps no results: they live in the database.
- One job runs a whole execution: node-to-node transitions stay in-process. arq's job
  timeout is set far beyond any workflow's (`executionTimeoutSeconds` is the real limit).
- The sweeper (one active at a time, through a Redis lock) hands the database's view to the
  queue again: QUEUED executions whose job was lost, RUNNING ones whose lease expired,
  WAITING ones (as deferred jobs). Re-enqueueing is idempotent: arq refuses a job id it holds.
- Cancellation is published on a Redis channel; every worker listens and stops the execution
  if it runs it. Lease renewals also read the database's cancel flag, in case the message
  was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
from arq import Worker
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.utils import timestamp_ms, to_unix_ms
from arq.worker import func
from redis.exceptions import RedisError

from engine import metrics
from engine.executor import SHUTDOWN
from engine.runner import ExecutionRunner
from engine.submitter import QueueUnavailable

logger = logging.getLogger("loom.queue")

QUEUE_NAME = "loom:queue"
JOB_FUNCTION = "run_execution"
CANCEL_CHANNEL = "loom:cancel"
SWEEPER_LOCK = "loom:sweeper"
# arq must never time a workflow out: the execution timeout in its settings does that.
JOB_TIMEOUT = timedelta(days=3650)
DEFAULT_POLL_DELAY_S = 0.005


def job_id(execution_id: str, generation: int) -> str:
    return f"{execution_id}:{generation}"


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


async def connect(redis_url: str) -> ArqRedis:
    """An arq Redis pool with Loom's JSON job serializer."""
    return await create_pool(
        RedisSettings.from_dsn(redis_url),
        job_serializer=_dumps,
        job_deserializer=orjson.loads,
        default_queue_name=QUEUE_NAME,
    )


def process_owner() -> str:
    """A name for this process's leases, unique across machines and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ArqSubmitter:
    """`engine.submitter.Submitter` on arq: enqueue a job, publish a cancel. Given a URL
    instead of a pool, it connects on first use (API processes build it before their loop)."""

    def __init__(self, redis: ArqRedis | None = None, *, url: str | None = None) -> None:
        if redis is None and url is None:
            raise ValueError("an arq pool or a Redis URL is needed")
        self._redis = redis
        self._url = url
        self._connecting = asyncio.Lock()

    @property
    def redis(self) -> ArqRedis:
        if self._redis is None:
            raise RuntimeError("not connected yet")
        return self._redis

    async def connect(self) -> ArqRedis:
        async with self._connecting:
            if self._redis is None:
                assert self._url is not None
                self._redis = await connect(self._url)
        return self._redis

    async def close(self) -> None:
        if self._redis is not None and self._url is not None:
            await self._redis.aclose()
            self._redis = None

    async def submit(
        self, execution_id: str, generation: int = 0, run_at: datetime | None = None
    ) -> None:
        """Enqueue the job that claims `generation`. A job already queued under the same id
        stays, brought forward when this asks for it earlier (a waiting execution woken
        before its resume time)."""
        defer_until = run_at if run_at is not None and run_at > datetime.now(UTC) else None
        identifier = job_id(execution_id, generation)
        try:
            redis = self._redis or await self.connect()
            job = await redis.enqueue_job(
                JOB_FUNCTION,
                execution_id,
                generation,
                _job_id=identifier,
                _defer_until=defer_until,
            )
            if job is None:
                due = defer_until if defer_until is not None else datetime.now(UTC)
                await redis.zadd(QUEUE_NAME, {identifier: to_unix_ms(due)}, xx=True, lt=True)
        except RedisError as exc:
            raise QueueUnavailable(f"the queue did not take {identifier}: {exc}") from exc

    async def cancel(self, execution_id: str) -> bool:
        """Tell whichever worker runs it to stop; False: not stopped here (the caller also
        cancels it in the database if it was never claimed)."""
        try:
            redis = self._redis or await self.connect()
            await redis.publish(CANCEL_CHANNEL, execution_id)
        except RedisError as exc:
            raise QueueUnavailable(f"the cancel of {execution_id} was not sent: {exc}") from exc
        return False


async def run_execution(ctx: dict[str, Any], execution_id: str, generation: int) -> None:
    """The arq job: run one execution to its end in this worker."""
    runner: ExecutionRunner = ctx["loom_runner"]
    submitter: ArqSubmitter = ctx["loom_submitter"]
    # `score`: when it was due (by the enqueuer's clock). Recorded only once the claim
    # succeeded: a stale or duplicate job that claims nothing picked nothing up.
    latency_s = (timestamp_ms() - ctx["score"]) / 1000
    try:
        await runner.run(execution_id, generation, on_claimed=partial(metrics.picked_up, latency_s))
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if exc.args == (SHUTDOWN,):
            # Interrupted by this worker's shutdown: the lease is released; hand it on.
            with contextlib.suppress(Exception):
                await asyncio.shield(submitter.submit(execution_id, generation + 1))
        # A user's cancel was recorded by the runner; the job itself ends normally.
        if task is not None:
            task.uncancel()
    except Exception:
        logger.exception("execution %s crashed in its job", execution_id)


class Sweeper:
    """Re-enqueues what the queue may have lost. Runs in every worker; one at a time is
    active, through a Redis lock that expires if its holder dies."""

    def __init__(
        self,
        redis: ArqRedis,
        submitter: ArqSubmitter,
        due: Callable[[], Awaitable[Sequence[Any]]],
        owner: str,
        interval_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.submitter = submitter
        # What to hand to the queue (`ExecutionLifecycle.to_sweep`): `storage.queueing.Due`s.
        self.due = due
        self.owner = owner
        self.interval_s = interval_s
        self.sweeps = 0

    async def run_forever(self) -> None:
        while True:
            try:
                if await self._lead():
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("sweep failed; trying again")
            await asyncio.sleep(self.interval_s)

    async def _lead(self) -> bool:
        """Take (or keep) the sweeper lock for two intervals."""
        ttl_ms = int(self.interval_s * 2000)
        if await self.redis.set(SWEEPER_LOCK, self.owner, nx=True, px=ttl_ms):
            return True
        holder = await self.redis.get(SWEEPER_LOCK)
        if holder is not None and holder.decode() == self.owner:
            await self.redis.pexpire(SWEEPER_LOCK, ttl_ms)
            return True
        return False

    async def _forget_abandoned_job(self, identifier: str) -> None:
        """A job a process took (its in-progress key is set) but never claimed with, for an
        execution claimable for a while: that process died between taking and claiming. arq
        would keep the job id for its whole timeout; free it so the job can be queued again.
        Should the process be alive after all, its claim and the new job's race on the lease
        generation and one of them does nothing."""
        if await self.redis.exists(in_progress_key_prefix + identifier):
            logger.warning("job %s was taken and never started; queueing it again", identifier)
            await self.redis.delete(
                in_progress_key_prefix + identifier, job_key_prefix + identifier
            )

    async def _remove_dead_job(self, identifier: str) -> None:
        """The job of a process that died while running it: arq would keep it in progress,
        at the head of the queue, for its whole timeout; enough of them would hide new jobs
        from every worker's poll."""
        await self.redis.zrem(QUEUE_NAME, identifier)
        await self.redis.delete(in_progress_key_prefix + identifier, job_key_prefix + identifier)

    async def sweep(self) -> int:
        """One pass; returns how many executions were handed to the queue."""
        handed = 0
        for due in await self.due():
            if due.overdue:
                await self._forget_abandoned_job(job_id(due.execution_id, due.generation))
            if due.dead_job_generation is not None:
                await self._remove_dead_job(job_id(due.execution_id, due.dead_job_generation))
            await self.submitter.submit(due.execution_id, due.generation, due.run_at)
            handed += 1
        self.sweeps += 1
        return handed


async def listen_for_cancels(redis: ArqRedis, runner: ExecutionRunner) -> None:
    """Stop executions of this process that someone cancels, as the messages arrive."""
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(CANCEL_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    data = message["data"]
                    execution_id = data.decode() if isinstance(data, bytes) else str(data)
                    if runner.cancel(execution_id):
                        logger.info("execution %s: cancel requested", execution_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("cancel channel lost; reconnecting")
            await asyncio.sleep(1)


# Takes up to ARGV[2] of the given jobs for one worker, atomically: each whose in-progress
# key (KEYS[i + 1] for ARGV[i + 3]) is absent and whose queue score is due gets that key.
# Returns the ids taken and their scores, alternately.
_TAKE_JOBS = """
local now, slots, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local taken = {}
for i = 2, #KEYS do
  if #taken >= 2 * slots then break end
  local id = ARGV[i + 2]
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', KEYS[i], ttl, '1')
      taken[#taken + 1] = id
      taken[#taken + 1] = score
    end
  end
end
return taken
"""


class _Worker(Worker):
    """arq's worker, taking jobs in one Redis round trip per poll.

    arq checks every id it reads from the queue with four round trips (watch, exists, score,
    then the transaction), and running jobs stay in the queue until they finish: with N jobs
    running across the workers, every poll with a free slot paid 3N round trips before it
    reached a new job, and workers polling the same queue raced for each new one (two workers
    were slower than one). Here a script takes every due job it can for the free slots,
    atomically, with the same rules as arq's (not in progress anywhere, score due) and the
    same in-progress key; arq then runs and finishes each job as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._take = self.pool.register_script(_TAKE_JOBS)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        slots = self.max_jobs - self.job_counter
        candidates = [job_id.decode() for job_id in job_ids]
        candidates = [job_id for job_id in candidates if job_id not in self.tasks]
        if slots <= 0 or not candidates:
            return
        taken = await self._take(
            keys=[self.queue_name, *(in_progress_key_prefix + job_id for job_id in candidates)],
            args=[timestamp_ms(), slots, int(self.in_progress_timeout_s * 1000), *candidates],
        )
        for job_id, score in zip(taken[::2], taken[1::2], strict=True):
            # Never waits: at most `slots` were taken, and only this loop adds jobs.
            await self.sem.acquire()
            self.job_counter += 1
            identifier = job_id.decode()
            task = self.loop.create_task(self.run_job(identifier, int(float(score))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[identifier] = task


def build_worker(
    redis: ArqRedis,
    runner: ExecutionRunner,
    submitter: ArqSubmitter,
    *,
    concurrency: int,
    poll_delay_s: float = DEFAULT_POLL_DELAY_S,
) -> Worker:
    """An arq worker that runs executions, at most `concurrency` at a time."""
    return _Worker(
        functions=[func(run_execution, name=JOB_FUNCTION, max_tries=1000)],
        queue_name=QUEUE_NAME,
        redis_pool=redis,
        max_jobs=concurrency,
        poll_delay=poll_delay_s,
        job_timeout=JOB_TIMEOUT,
        keep_result=0,
        handle_signals=False,
        job_serializer=_dumps,
        job_deserializer=orjson.loads,
        ctx={"loom_runner": runner, "loom_submitter": submitter},
    )
