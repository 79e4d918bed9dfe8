"""Every transition of an execution outside its run, in one place.

An execution is started (created once per idempotency key, announced, admitted or queued
under its workflow's `maxConcurrentExecutions`, handed to the submitter), may be cancelled,
and after each run is followed up (a WAITING one handed back for its resume time, a caller
waiting for it woken, its concurrency slot given to the next). Embedded mode resumes on start
what ran when the process stopped; the sweeper admits what waits for a slot. The GraphQL
resolvers, webhooks, schedules, sub-workflow calls and the worker all go through
`ExecutionLifecycle`; none of them repeats any part of it. Storage is reached through the
ports of engine/ports.py.

An execution id from `executeWorkflow` to the worker and back to a subscription:
resolvers/executions.py (checks, snapshot) -> engine/lifecycle.py (`start`: admit, create
through storage/lifecycle_store.py, submit) -> engine/queue.py or engine/submitter.py ->
engine/runner.py (claim through storage/execution_source.py, run) -> engine/bus.py (fanout)
-> the subscription; and after the run engine/lifecycle.py (`after_run`). Every write on the
way (the creation, the claim, the run's records) is committed by storage/recorder.py, which
alone publishes the events, once committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.executor import Outcome
from engine.handover import RunHandover
from engine.ports import (
    ClaimedStarts,
    CreatedExecution,
    ExecutionState,
    ExecutionStore,
    Runnable,
    StartConflict,
    StartedBy,
    StartRequest,
)
from engine.runner import LoadedExecution
from engine.states import ExecutionStatus
from engine.submitter import Submitter

logger = logging.getLogger("loom.lifecycle")

# How long a cancel waits for the process running the execution to record it.
CANCEL_WAIT_S = 2.0
_HELD = (ExecutionStatus.RUNNING.value, ExecutionStatus.WAITING.value)


@dataclass(frozen=True, slots=True)
class StartResult:
    """What a start made: a new execution, or the one started earlier with the same
    idempotency key (`created` False)."""

    execution_id: str
    # As stored; None for embedded mode's one-write start (nothing was read or returned).
    execution: CreatedExecution | None
    created: bool
    # The handover given to a run started from memory in this process; None otherwise (the
    # caller reads the answer from the database).
    handover: RunHandover | None = None


class ExecutionLifecycle:
    """Starts, cancels, follows up and resumes executions (see the module docstring).

    `submitter` runs them (in this process, or through the queue); `starts`, in embedded
    mode, stores and runs a start in one write. What `store` commits (a new execution's
    first event, a cancellation of one never claimed) it also publishes: the writer of
    storage/recorder.py does, once committed."""

    def __init__(
        self,
        store: ExecutionStore,
        submitter: Submitter | None = None,
        starts: ClaimedStarts | None = None,
    ) -> None:
        self.store = store
        self.submitter = submitter
        self.starts = starts

    # -- start -------------------------------------------------------------------------

    async def start(
        self,
        prepare: Callable[[], Awaitable[StartRequest]],
        *,
        idempotency_key: tuple[str, str] | None = None,
        handover: RunHandover | None = None,
        listen: Callable[[str], None] | None = None,
    ) -> StartResult:
        """Start an execution (executeWorkflow, retryExecution, a webhook), once per
        `idempotency_key` (a workflow id and a key).

        The execution of the workflow started earlier with the key, if any, is the answer.
        Otherwise `prepare` describes the new execution (or raises why there is none: the
        caller's own refusal, passed on as it is); it is admitted or queued, created,
        announced and submitted. `listen` is told its id before it can run (to follow its
        events from the first); `handover` receives its answer in memory when embedded mode
        runs it here from memory. A concurrent start with the same key wins over this one:
        its execution is the answer. `StartConflict` when the workflow is gone."""
        if idempotency_key is not None:
            earlier = await self.store.find_started(*idempotency_key)
            if earlier is not None:
                return StartResult(earlier.id, earlier, created=False)
        request = await prepare()
        admitted = self.admission(request)
        try:
            starts = self.starts
            if starts is not None and request.runnable is not None and admitted:
                # Embedded mode, nothing to queue for: one write, the run starts here. That
                # write holds the audit record of `request.started_by` too (storage/starts.py),
                # as `store.create` does: no start skips its record, whichever path it takes.
                prepared = starts.prepare_start(request, request.runnable)
                if listen is not None:
                    listen(prepared.execution_id)
                await starts.store_and_run(prepared, handover)
                return StartResult(prepared.execution_id, None, True, handover)
            (execution,) = await self.store.create([request], [admitted])
        except StartConflict:
            if idempotency_key is None:
                raise
            earlier = await self.store.find_started(*idempotency_key)
            if earlier is None:
                raise
            return StartResult(earlier.id, earlier, created=False)
        if listen is not None:
            listen(execution.id)
        await self.submit(execution)
        return StartResult(execution.id, execution, True)

    async def start_calls(self, requests: Sequence[StartRequest]) -> list[CreatedExecution]:
        """Start the executions of a sub-workflow call (created together, in one
        transaction), and submit each."""
        admitted = [self.admission(request) for request in requests]
        created = list(await self.store.create(requests, admitted))
        for execution in created:
            await self.submit(execution)
        return created

    async def fire_schedules(self, now: datetime) -> int:
        """Fire the schedules due at `now` (each tick once across processes) and submit the
        executions they start; returns how many."""
        created = await self.store.fire_schedules(now, self.admission)
        for execution in created:
            await self.submit(execution)
        return len(created)

    def admission(self, request: StartRequest) -> bool:
        """Whether a new execution may run at once (True) or waits for a slot of its
        workflow's `maxConcurrentExecutions` (False).

        Every new execution of every mode passes here before it is created (`start`,
        `start_calls`, `fire_schedules`), with its workspace, workflow and version
        (`request.runnable`: with its graph, when the caller had it at hand). A sub-workflow
        execution (`request.parent`) is admitted at once, whatever its workflow's limit (as in
        n8n, the limit is for executions that triggers and users start): a caller holding a
        slot while it waits for a call of its own workflow would otherwise wait forever."""
        return request.parent is not None or request.concurrency_limit is None

    async def submit(self, execution: CreatedExecution) -> None:
        """Hand a committed new execution to the submitter, or, when its workflow limits
        concurrent executions, whatever the limit admits now (FIFO). If the queue cannot be
        reached it stays QUEUED in the database and the sweeper enqueues it later. (Its first
        event, EXECUTION_QUEUED, was published when the store committed it.)"""
        submitter = self._submitter()
        if execution.admitted_at is None:
            await self.admit(execution.workflow_id)
            return
        try:
            await submitter.submit(execution.id, execution.lease_generation)
        except (ConnectionError, OSError):  # QueueUnavailable is a ConnectionError
            logger.exception(
                "execution %s: queue unreachable; the sweeper enqueues it", execution.id
            )

    # -- after a run ---------------------------------------------------------------------

    async def after_run(self, loaded: LoadedExecution, outcome: Outcome) -> None:
        """What follows an execution's run (the runner's `on_finished`): a WAITING one is
        handed to the submitter for its resume time; one that ended wakes the caller waiting
        for it and gives its slot of `maxConcurrentExecutions` to the next."""
        submitter = self._submitter()
        if outcome.status is ExecutionStatus.WAITING:
            await submitter.submit(loaded.execution_id, loaded.generation, outcome.resume_at)
            # The sub-workflows it waits for may have ended before it was WAITING, when
            # their wake-up found it still running.
            for run_id in outcome.waiting_on_children:
                await self.wake_caller(loaded.execution_id, run_id)
            return
        if loaded.parent_waits and loaded.parent_execution_id and loaded.parent_run_id:
            await self.wake_caller(loaded.parent_execution_id, loaded.parent_run_id)
        if loaded.settings.get("maxConcurrentExecutions"):
            await self.admit(loaded.workflow_id)

    async def wake_caller(self, parent_id: str, run_id: str) -> None:
        """Resume the execution whose attempt `run_id` waits for sub-workflow executions, if
        they have all ended."""
        try:
            generation = await self.store.wake_caller(parent_id, run_id)
            if generation is not None:
                await self._submitter().submit(parent_id, generation)
        except (ConnectionError, OSError):  # QueueUnavailable is a ConnectionError
            logger.exception(
                "execution %s: queue unreachable; it resumes at its next check", parent_id
            )

    async def admit(self, workflow_id: str) -> None:
        """Run what free slots of the workflow's `maxConcurrentExecutions` admit now."""
        submitter = self.submitter
        if submitter is None:
            return
        try:
            for due in await self.store.admit(workflow_id):
                await submitter.submit(due.execution_id, due.generation)
        except (ConnectionError, OSError):  # QueueUnavailable is a ConnectionError
            logger.exception("workflow %s: queue unreachable; the sweeper admits", workflow_id)

    async def admit_waiting(self) -> list[Runnable]:
        """Admit, for every workflow, the queued executions its free slots take: those to run
        now (the sweeper hands them to the queue)."""
        admitted: list[Runnable] = []
        for workflow_id in await self.store.workflows_waiting_for_slots():
            admitted += await self.store.admit(workflow_id)
        return admitted

    async def to_sweep(self, queued_grace_s: float) -> list[Runnable]:
        """What the sweeper hands to the queue (again): what free slots admit now, and what
        the queue may have lost (see `ExecutionStore.lost`)."""
        return [*await self.admit_waiting(), *await self.store.lost(queued_grace_s)]

    # -- cancel --------------------------------------------------------------------------

    async def cancel(
        self, execution: ExecutionState, by: StartedBy | None = None
    ) -> ExecutionState | None:
        """Cancel the execution and the sub-workflow executions it waits for (Temporal's
        default parent close policy; those started without waiting go on). The process
        running it records the cancellation: it is given `CANCEL_WAIT_S` to land. Returns
        the execution as stored then; None if it is no longer stored (it had ended, kept
        none of its data, and the pruner deleted it meanwhile). `by`, an API caller, is
        recorded in the audit log by the transaction that takes the cancel of `execution`
        (not of its sub-workflow executions), only when that transaction changed it: a
        cancel of an ended execution, or the loser of two concurrent cancels, records
        nothing."""
        await self._cancel(execution, by)
        for child in await self.store.waited_descendants(execution.id):
            await self._cancel(child)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            state = await self.store.state(execution.id)
            if state is None:
                return None
            if state.status not in _HELD or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        if state.status == ExecutionStatus.CANCELLED.value:
            # It may have held a slot of `maxConcurrentExecutions`.
            await self.admit(state.workflow_id)
        return state

    async def _cancel(self, execution: ExecutionState, by: StartedBy | None = None) -> None:
        execution_id = execution.id
        requested = execution.status in _HELD
        if requested:
            await self.store.request_cancel(execution_id, by)
        # The process running it records the cancellation (it owns the event sequence); one
        # never claimed is cancelled here, conditionally, so a concurrent claim cannot also win.
        submitter = self.submitter
        if submitter is not None and await submitter.cancel(execution_id):
            if not requested:  # claimed since it was read QUEUED: the request is stored too
                await self.store.request_cancel(execution_id, by)
            return
        if not await self.store.cancel_unheld(execution_id, by):
            return
        if (
            submitter is not None
            and execution.parent_waits
            and execution.parent_execution_id
            and execution.parent_run_id
        ):
            # Nothing ran it, so nothing else tells its caller that it ended.
            await self.wake_caller(execution.parent_execution_id, execution.parent_run_id)

    # -- resume --------------------------------------------------------------------------

    async def resume_on_start(self) -> int:
        """Embedded mode at start: executions that were queued or running when the process
        stopped run again (nodes that succeeded are not repeated), waiting ones at their
        time, and queued ones take the slots free. Returns how many were interrupted."""
        submitter = self._submitter()
        found = await self.store.resumable()
        for execution_id in found.interrupted:
            await submitter.submit(execution_id)
        for execution_id, generation, resume_at in found.waiting:
            await submitter.submit(execution_id, generation, resume_at)
        for due in await self.admit_waiting():
            await submitter.submit(due.execution_id, due.generation)
        if found.interrupted:
            logger.info("resuming %d interrupted executions", len(found.interrupted))
        return len(found.interrupted)

    def _submitter(self) -> Submitter:
        if self.submitter is None:
            raise RuntimeError("no submitter configured: executions cannot run in this process")
        return self.submitter
