"""Submitting executions to run. Embedded mode runs them as asyncio tasks in this process;
distributed mode (arq) implements the same protocol elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Protocol

from engine import log_context
from engine.errors import EngineError
from engine.executor import SHUTDOWN
from engine.handover import RunHandover
from engine.runner import ExecutionRunner, LoadedExecution

logger = logging.getLogger("loom.submitter")


class QueueUnavailable(EngineError, ConnectionError):
    """The queue could not take a submission or a cancel (Redis unreachable or failing)."""


class Submitter(Protocol):
    async def submit(
        self, execution_id: str, generation: int = 0, run_at: datetime | None = None
    ) -> None:
        """Arrange for the committed execution to run (at `run_at`, if given): by a claim
        of lease `generation`, so that a stale submission does nothing."""
        ...

    async def cancel(self, execution_id: str) -> bool:
        """Stop the execution if it runs here; True when it did."""
        ...


class InProcessSubmitter:
    """Runs each execution as a task of this event loop (embedded mode)."""

    def __init__(self, runner: ExecutionRunner) -> None:
        self.runner = runner
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Executions whose task waits for a resume time (durable wait) and holds nothing,
        # with that time.
        self._sleeping: dict[str, datetime] = {}
        # Executions whose task has begun (a task cancelled before that never claims).
        self._started: set[str] = set()
        # Executions inserted already claimed (`start`) whose task has not begun: a cancel
        # must reach them through the execution, since cancelling a task before it begins
        # runs none of it, and nothing would record the end of a RUNNING execution.
        self._handed: dict[str, LoadedExecution] = {}

    async def submit(
        self, execution_id: str, generation: int | None = None, run_at: datetime | None = None
    ) -> None:
        current = self._tasks.get(execution_id)
        # A run may hand its execution on to a later run of itself (a durable wait).
        if current is not None and current is not asyncio.current_task():
            due = self._sleeping.get(execution_id)
            if due is None or (run_at is not None and run_at >= due):
                return
            current.cancel()  # woken before its resume time: the earlier run replaces it
        # Known as sleeping from now, not from when its task first runs: a wake-up may come
        # before that.
        if run_at is not None:
            self._sleeping[execution_id] = run_at
        else:
            self._sleeping.pop(execution_id, None)
        task = log_context.start_task(
            self._run(execution_id, generation, run_at),
            name=f"execution {execution_id}",
            request=True,
        )
        self._tasks[execution_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(execution_id) is done:
                del self._tasks[execution_id]

        task.add_done_callback(forget)

    def start(
        self, loaded: LoadedExecution, handover: RunHandover | None = None
    ) -> asyncio.Task[None]:
        """Run an execution this process inserted already claimed (embedded mode's one-write
        start): the runner takes it from memory, with `handover` for a waiting caller."""
        execution_id = loaded.execution_id
        self._handed[execution_id] = loaded
        task = log_context.start_task(
            self._run_started(loaded, handover), name=f"execution {execution_id}", request=True
        )
        self._tasks[execution_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(execution_id) is done:
                del self._tasks[execution_id]
            if self._handed.get(execution_id) is loaded:
                del self._handed[execution_id]

        task.add_done_callback(forget)
        return task

    async def _run_started(self, loaded: LoadedExecution, handover: RunHandover | None) -> None:
        execution_id = loaded.execution_id
        self._handed.pop(execution_id, None)
        self._started.add(execution_id)
        try:
            await self.runner.run_started(loaded, handover)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("execution %s crashed", execution_id)
        finally:
            self._started.discard(execution_id)

    async def _run(
        self, execution_id: str, generation: int | None, run_at: datetime | None
    ) -> None:
        self._started.add(execution_id)
        try:
            if run_at is not None:
                try:
                    await asyncio.sleep(max(0.0, (run_at - datetime.now(UTC)).total_seconds()))
                finally:
                    if self._sleeping.get(execution_id) is run_at:
                        del self._sleeping[execution_id]
            await self.runner.run(execution_id, generation)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("execution %s crashed", execution_id)
        finally:
            self._started.discard(execution_id)

    async def cancel(self, execution_id: str) -> bool:
        task = self._tasks.get(execution_id)
        if task is None:
            return False
        handed = self._handed.get(execution_id)
        if handed is not None:
            # Claimed already, its task not begun: cancelling the task would run none of it;
            # the run sees the request first thing and records the cancellation.
            handed.cancel_requested = True
        elif execution_id in self._sleeping or execution_id not in self._started:
            # Nothing runs it (it waits for its time, or its task has not begun and will
            # not): the caller cancels it in storage.
            self._sleeping.pop(execution_id, None)
            task.cancel()
            return False
        else:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
        return True

    async def wait(self, execution_id: str) -> None:
        """Wait until the execution's task has ended (tests, the CLI)."""
        task = self._tasks.get(execution_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    def running(self) -> list[str]:
        return list(self._tasks)

    async def close(self) -> None:
        """Interrupt what still runs and wait for it: running attempts are recorded as
        WORKER_LOST and the executions stay RUNNING, so the next start resumes them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel(SHUTDOWN)
        await asyncio.gather(*tasks, return_exceptions=True)
