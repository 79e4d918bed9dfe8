"""Embedded mode's one-write start: an execution that this process creates and runs.

The general path takes two transactions and a read: the execution is inserted QUEUED with
its EXECUTION_QUEUED event; the runner's task then loads it back (snapshot, graph and input
decoded again) and claims it (RUNNING, lease generation 1, EXECUTION_STARTED). When the
process that creates the execution also runs it at once (embedded mode, a workflow without
`maxConcurrentExecutions`), everything that claim would write is known at creation: the
execution is inserted already claimed, with both events and its input, by the group-commit
writer (storage/recorder.py) in its next round, one transaction shared with every other start
and record of that round; once committed, the runner is handed the `LoadedExecution` it would
have read. The rows, events and sequence numbers are those of the general path; only the
number of transactions and round trips differs.
Anything that must queue (a concurrency limit), and every start in distributed mode, keeps
the general path.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from engine import tracing
from engine.events import Event, EventType
from engine.executor import ENGINE_VERSION
from engine.handover import RunHandover
from engine.ports import PreparedStart, RunnableVersion, StartConflict, StartRequest
from engine.runner import LoadedExecution
from engine.states import ExecutionStatus
from engine.submitter import InProcessSubmitter
from storage import audit, payloads
from storage.execution_source import DatabaseExecutionSource
from storage.executions import _EXECUTIONS, start_details
from storage.models import new_id
from storage.payloads import INPUT, encode_payload
from storage.recorder import GroupCommitWriter, NewExecution
from storage.types import utcnow

_QUEUED = ExecutionStatus.QUEUED.value
_RUNNING = ExecutionStatus.RUNNING.value
# Every column of an execution row as a new one holds it, before the values of a start.
_NEW_ROW: dict[str, Any] = {column.name: None for column in _EXECUTIONS.c} | {
    "reuse_outputs": False,
    "node_only": False,
    "parent_waits": False,
    "call_depth": 0,
    "engine_version": ENGINE_VERSION,
}


@dataclass(frozen=True, slots=True)
class Started:
    """A new execution, claimed by this process: what it stores and what it runs."""

    loaded: LoadedExecution
    new: NewExecution

    @property
    def execution_id(self) -> str:
        return self.loaded.execution_id


# Runs started here at most at once. A start that answers at once costs far less than its
# run: without a bound, a burst of such requests is accepted faster than its runs complete,
# and the runs pile up in memory (hundreds of MB, every later request waiting behind them).
# Past it a start waits for a run to end: the caller is slowed down, nothing is refused.
MAX_RUNNING_STARTS = 256


class EmbeddedStarts:
    """Creates executions claimed by this process and runs them from memory (see the module
    docstring); `engine.ports.ClaimedStarts` for the execution lifecycle."""

    def __init__(
        self,
        source: DatabaseExecutionSource,
        submitter: InProcessSubmitter,
        writer: GroupCommitWriter,
        max_running: int = MAX_RUNNING_STARTS,
    ) -> None:
        self.source = source
        self.submitter = submitter
        self.writer = writer
        self._slots = asyncio.Semaphore(max_running)

    def prepare(
        self,
        version: RunnableVersion,
        *,
        mode: str,
        input: dict[str, Any],
        idempotency_key: str | None = None,
        start_node_id: str | None = None,
        created_by: str | None = None,
    ) -> Started:
        """A new execution of `version` as the claim of this process leaves it (RUNNING,
        lease generation 1, its first two events), not yet stored: `start` stores and runs
        it. Its id is known from here on (a caller may listen to its events first)."""
        now = utcnow()
        execution_id = new_id()
        traceparent = tracing.current_traceparent()
        row = _NEW_ROW | {
            "id": execution_id,
            "workspace_id": version.workspace_id,
            "workflow_id": version.workflow_id,
            "workflow_version_id": version.workflow_version_id,
            "workflow_version": version.workflow_version,
            "status": _RUNNING,
            "mode": mode,
            "idempotency_key": idempotency_key,
            "start_node_id": start_node_id,
            "created_by": created_by,
            "lease_generation": 1,
            "lease_owner": self.source.owner,
            "lease_expires_at": now + timedelta(seconds=self.source.lease_s),
            "admitted_at": now,
            "created_at": now,
            "started_at": now,
            "traceparent": traceparent,
        }
        data, raw_bytes = encode_payload(input)
        input_row = {
            "execution_id": execution_id,
            "kind": INPUT,
            "encoding": payloads.ENCODING,
            "raw_bytes": raw_bytes,
            "data": data,
        }
        loaded = LoadedExecution(
            execution_id=execution_id,
            workspace_id=version.workspace_id,
            workflow_id=version.workflow_id,
            workflow_name=version.workflow_name,
            version_id=version.workflow_version_id,
            version=version.workflow_version,
            nodes=version.nodes,
            edges=version.edges,
            settings=version.version_settings,
            status=ExecutionStatus.RUNNING,
            mode=mode,
            input=input,
            input_bytes=raw_bytes,
            generation=1,
            start_node_id=start_node_id,
            next_sequence=3,
            traceparent=traceparent,
        )
        events = [
            Event(execution_id, 1, EventType.EXECUTION_QUEUED, now, status=_QUEUED),
            Event(execution_id, 2, EventType.EXECUTION_STARTED, now, status=_RUNNING),
        ]
        return Started(loaded, NewExecution(row, input_row, events, lambda: None))

    def prepare_start(self, request: StartRequest, version: RunnableVersion) -> Started:
        """`prepare` for the lifecycle's start; an API caller's start (`started_by`) is
        recorded in the audit log by the same write, as the general path records it."""
        started = self.prepare(
            version,
            mode=request.mode,
            input=request.input,
            idempotency_key=request.idempotency_key,
            start_node_id=request.start_node_id,
            created_by=request.created_by,
        )
        by = request.started_by
        if by is not None:
            row = audit.event(
                actor=by,
                action=audit.AuditAction(by.action),
                workspace_id=request.workspace_id,
                target_kind="execution",
                target_id=started.execution_id,
                details=start_details(request),
            )
            started.new.audit_row = row.model_dump()
        return started

    async def store_and_run(
        self, prepared: PreparedStart, handover: RunHandover | None = None
    ) -> None:
        """`start` for the lifecycle: a refused creation is its `StartConflict`."""
        assert isinstance(prepared, Started)
        try:
            await self.start(prepared, handover)
        except IntegrityError as exc:
            raise StartConflict(str(exc.orig)) from exc

    async def start(self, started: Started, handover: RunHandover | None = None) -> None:
        """Store the execution with the writer's next round (one transaction for every start
        and record of that round) and, once committed, run it here: its records fenced by
        its generation, `handover` given its answer. Raises `IntegrityError` for an
        idempotency key used already (or a workflow deleted meanwhile)."""
        loaded = started.loaded
        slots = self._slots
        held = True

        def release(_: object = None) -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        def run() -> None:
            self.writer.fence(loaded.execution_id, loaded.generation)
            self.submitter.start(loaded, handover).add_done_callback(release)

        started.new.on_commit = run
        await slots.acquire()
        try:
            await self.writer.create(started.new)
        except BaseException:
            # Refused; or the caller went away, and the run (if it is committed) keeps the
            # slot no longer.
            release()
            raise
