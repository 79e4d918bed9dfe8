"""Embedded mode's one-write start: an execution that this process creates and runs.

The general path takes two transactions and a read: the execution is inserted QUEUED with
its EXECUTION_QUEUED event; the runner's task then loads it back (snapshot, graph and input
decoded again) and claims it (RUNNING, lease generation 1, EXECUTION_STARTED). When the
process that creates the execution also runs it at once (embedded mode, a workflow without
`maxConcurrentExecutions`), everything that claim would write is known at creation: the
execution is inserted already claimed, with both events and its input, in one transaction,
and the runner is handed the `LoadedExecution` it would have read. The rows, events and
sequence numbers are those of the general path; only the number of round trips differs.
Anything that must queue (a concurrency limit), and every start in distributed mode, keeps
the general path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from engine.bus import EventPublisher
from engine.events import Event, EventType
from engine.executor import ENGINE_VERSION
from engine.handover import RunHandover
from engine.runner import LoadedExecution
from engine.states import ExecutionStatus
from engine.submitter import InProcessSubmitter
from storage import payloads
from storage.db import run_core
from storage.executions import (
    _EXECUTIONS,
    _INSERT_EXECUTION,
    _INSERT_RUN_EVENT,
    INPUT,
    DatabaseExecutionSource,
    encode_payload,
    insert_execution_payloads,
)
from storage.models import new_id
from storage.types import utcnow

_RUNNING = ExecutionStatus.RUNNING.value
# Every column of an execution row as a new one holds it, before the values of a start.
_NEW_ROW: dict[str, Any] = {column.name: None for column in _EXECUTIONS.c} | {
    "reuse_outputs": False,
    "parent_waits": False,
    "call_depth": 0,
    "engine_version": ENGINE_VERSION,
}


@dataclass(frozen=True, slots=True)
class Started:
    """An execution inserted claimed (committed), not yet running: what `run` needs."""

    loaded: LoadedExecution
    at: datetime

    @property
    def execution_id(self) -> str:
        return self.loaded.execution_id


class RunnableVersion(Protocol):
    """What a start needs of the workflow version it runs (a webhook `Route`)."""

    @property
    def workflow_id(self) -> str: ...

    @property
    def workspace_id(self) -> str: ...

    @property
    def workflow_name(self) -> str: ...

    @property
    def workflow_version_id(self) -> str: ...

    @property
    def workflow_version(self) -> int: ...

    @property
    def nodes(self) -> list[dict[str, Any]]: ...

    @property
    def edges(self) -> list[dict[str, Any]]: ...

    @property
    def version_settings(self) -> dict[str, Any]: ...


class EmbeddedStarts:
    """Creates executions claimed by this process and runs them from memory (see the module
    docstring)."""

    def __init__(
        self,
        source: DatabaseExecutionSource,
        submitter: InProcessSubmitter,
        publisher: EventPublisher | None,
    ) -> None:
        self.source = source
        self.submitter = submitter
        self.publisher = publisher

    async def create(
        self,
        version: RunnableVersion,
        *,
        mode: str,
        input: dict[str, Any],
        idempotency_key: str | None = None,
        start_node_id: str | None = None,
        created_by: str | None = None,
    ) -> Started:
        """Insert the execution RUNNING under this process's lease (generation 1), with its
        input and its EXECUTION_QUEUED and EXECUTION_STARTED events, in one transaction;
        the `LoadedExecution` the claim would have read. Raises `IntegrityError` for an
        idempotency key used already (or a workflow deleted meanwhile); `run` starts it."""
        now = utcnow()
        execution_id = new_id()
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
        }
        data, raw_bytes = encode_payload(input)
        events = [
            {"execution_id": execution_id, "sequence": 1, "type": "EXECUTION_QUEUED"}
            | {"at": now, "status": ExecutionStatus.QUEUED.value},
            {"execution_id": execution_id, "sequence": 2, "type": "EXECUTION_STARTED"}
            | {"at": now, "status": _RUNNING},
        ]
        async with self.source.database.transaction() as session:
            await run_core(session, _INSERT_EXECUTION, [row])
            await insert_execution_payloads(
                session,
                [
                    {
                        "execution_id": execution_id,
                        "kind": INPUT,
                        "encoding": payloads.ENCODING,
                        "raw_bytes": raw_bytes,
                        "data": data,
                    }
                ],
            )
            await run_core(session, _INSERT_RUN_EVENT, events)
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
        )
        return Started(loaded, now)

    def run(self, started: Started, handover: RunHandover | None = None) -> None:
        """Announce the committed start (EXECUTION_QUEUED and EXECUTION_STARTED, as the
        general path publishes them), fence the run's records by its generation, and run
        it in this process."""
        loaded, at = started.loaded, started.at
        if self.publisher is not None:
            queued = Event(loaded.execution_id, 1, EventType.EXECUTION_QUEUED, at, status="QUEUED")
            running = Event(
                loaded.execution_id, 2, EventType.EXECUTION_STARTED, at, status=_RUNNING
            )
            self.publisher.publish([queued, running])
        if self.source.writer is not None:
            self.source.writer.fence(loaded.execution_id, loaded.generation)
        self.submitter.start(loaded, handover)
