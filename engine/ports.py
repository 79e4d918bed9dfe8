"""What the execution lifecycle (engine/lifecycle.py) needs of storage, as the engine says it.

The engine defines these ports; storage implements them (storage/lifecycle_store.py,
storage/starts.py). The lifecycle never sees a session, a table or a database error: a
creation that storage refuses comes back as `StartConflict`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.errors import EngineError
from engine.handover import RunHandover


class StartConflict(EngineError):
    """Storage refused a new execution: its idempotency key was used meanwhile (by a
    concurrent start), or its workflow is gone (deleted since it was read)."""


class LeaseLost(EngineError):
    """This process no longer holds the lease of the execution it writes for (another took
    it over): what it meant to create for it (a sub-workflow call's executions) is not
    created."""


class CreatedExecution(Protocol):
    """An execution as storage holds it once created (a storage row)."""

    @property
    def id(self) -> str: ...

    @property
    def workflow_id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def admitted_at(self) -> datetime | None: ...

    @property
    def lease_generation(self) -> int: ...


class ExecutionState(CreatedExecution, Protocol):
    """What a cancellation needs of a stored execution."""

    @property
    def status(self) -> str: ...

    @property
    def parent_waits(self) -> bool: ...

    @property
    def parent_execution_id(self) -> str | None: ...

    @property
    def parent_run_id(self) -> str | None: ...


class Runnable(Protocol):
    """An execution that may run now: its id and the lease generation a claim must expect
    (`storage.queueing.Due`)."""

    @property
    def execution_id(self) -> str: ...

    @property
    def generation(self) -> int: ...


class RunnableVersion(Protocol):
    """What a start needs of the workflow version it runs, graph included (a webhook
    `Route`): embedded mode starts the run from it without reading the snapshot back."""

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


@dataclass(frozen=True, slots=True)
class ParentLink:
    """Where a sub-workflow execution was called from (see `Execution.parent_*`)."""

    execution_id: str
    node_id: str
    run_id: str
    batch: int
    waits: bool
    depth: int


@dataclass(frozen=True, slots=True)
class StartedBy:
    """Who started (or cancelled) an execution through the API, for the audit log, which
    records it in the transaction that creates the execution (or takes the cancel): the
    user, the token they used (its id), and the log's action (`execution.run`,
    `execution.retry`, `execution.cancel`)."""

    user_id: str
    token_id: str | None
    action: str


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A new execution, as every way of starting one describes it to the lifecycle."""

    workspace_id: str
    workflow_id: str
    # The workflow's settings (its draft's: `maxConcurrentExecutions` admits or queues).
    workflow_settings: dict[str, Any]
    version_id: str
    version: int
    mode: str
    input: dict[str, Any]
    created_by: str | None = None
    idempotency_key: str | None = None
    start_node_id: str | None = None
    retry_of: str | None = None
    reuse_outputs: bool = False
    # A run to a node (engine/partial.py): the node, whether only it runs (on the input's
    # `items`), and the earlier execution whose still-valid outputs it reuses.
    destination_node_id: str | None = None
    node_only: bool = False
    reuse_from: str | None = None
    # A sub-workflow call: the calling node's attempt.
    parent: ParentLink | None = None
    # The version with its graph, when the caller has it (a webhook's route): lets embedded
    # mode start the run in one write.
    runnable: RunnableVersion | None = field(default=None, compare=False)
    # A start by an API caller (a manual run, a retry): the audit log records it.
    started_by: StartedBy | None = None

    @property
    def concurrency_limit(self) -> int | None:
        """The workflow's `maxConcurrentExecutions`, if it sets one."""
        limit = (self.workflow_settings or {}).get("maxConcurrentExecutions")
        return int(limit) if isinstance(limit, int) and limit > 0 else None


class PreparedStart(Protocol):
    """A start of embedded mode's one-write path, prepared but not yet stored."""

    @property
    def execution_id(self) -> str: ...


class ClaimedStarts(Protocol):
    """Embedded mode's one-write start (storage/starts.py): the execution stored as its
    claim by this process leaves it, and run here from memory."""

    def prepare_start(self, request: StartRequest, version: RunnableVersion) -> PreparedStart:
        """The new execution, not yet stored; its id is known from here on."""
        ...

    async def store_and_run(
        self, prepared: PreparedStart, handover: RunHandover | None = None
    ) -> None:
        """Store it and, once committed, run it here. `StartConflict` when refused."""
        ...


class ExecutionStore(Protocol):
    """The lifecycle's storage: creation, admission, wake-ups, cancellation, resume."""

    async def find_started(self, workflow_id: str, idempotency_key: str) -> CreatedExecution | None:
        """The execution started earlier for the workflow with this idempotency key."""
        ...

    async def create(
        self, requests: Sequence[StartRequest], admitted: Sequence[bool]
    ) -> Sequence[CreatedExecution]:
        """Store QUEUED executions (admitted to run at once, or waiting for a slot), each
        with its first event, in one transaction, and publish those events once committed;
        `StartConflict` when refused (an idempotency key used meanwhile, the workflow
        gone)."""
        ...

    async def fire_schedules(
        self, now: datetime, admission: Callable[[StartRequest], bool]
    ) -> Sequence[CreatedExecution]:
        """Fire the schedules due at `now`, each tick once across processes: each new
        execution is created in the transaction that records its tick (its first event
        published once committed), `admission` asked first (see
        `ExecutionLifecycle.admission`)."""
        ...

    async def admit(self, workflow_id: str) -> Sequence[Runnable]:
        """Give free slots of the workflow's `maxConcurrentExecutions` to its oldest queued
        executions (FIFO): those to run now."""
        ...

    async def workflows_waiting_for_slots(self) -> Sequence[str]:
        """Workflows with queued executions never admitted."""
        ...

    async def lost(self, queued_grace_s: float) -> Sequence[Runnable]:
        """What the queue must hold and may have lost (`storage.queueing.due`): admitted
        QUEUED executions older than `queued_grace_s`, RUNNING ones whose lease expired,
        WAITING ones (with their resume time)."""
        ...

    async def wake_caller(self, parent_id: str, run_id: str) -> int | None:
        """Make the WAITING caller claimable now if every execution its attempt `run_id`
        started has ended: its lease generation then, else None."""
        ...

    async def request_cancel(self, execution_id: str, by: StartedBy | None = None) -> bool:
        """Mark a RUNNING or WAITING execution as asked to stop (its holder sees it at its
        next check); False if it is in neither state or was asked already. `by` (an API
        caller's cancel) is recorded in the same transaction, only when it marked it."""
        ...

    async def cancel_unheld(self, execution_id: str, by: StartedBy | None = None) -> bool:
        """Cancel an execution no process holds (QUEUED or WAITING), its events published
        once committed; False if it is in neither state (conditional: a concurrent claim
        cannot also win). `by` is recorded in the same transaction when this cancelled it
        and it had not been asked to stop already (that request recorded it)."""
        ...

    async def waited_descendants(self, execution_id: str) -> Sequence[ExecutionState]:
        """The sub-workflow executions the execution waits for, and theirs."""
        ...

    async def state(self, execution_id: str) -> ExecutionState | None:
        """The execution as stored now; None once pruned (it ended and was deleted)."""
        ...

    async def resumable(self) -> Resumable:
        """Embedded mode at start (no other process runs anything): every lease expired,
        and what ran or waited when the process stopped."""
        ...


@dataclass(frozen=True, slots=True)
class Resumable:
    """What embedded mode resumes on start."""

    # Executions that were running, or queued with a slot, oldest first.
    interrupted: list[str]
    # WAITING executions (durable waits): id, lease generation, when due.
    waiting: list[tuple[str, int, datetime | None]]
