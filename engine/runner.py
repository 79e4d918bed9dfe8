"""Running an execution by id: load it, compile (or reuse) its plan, run it, record it.

The same runner serves both modes; only what calls `run` differs (an asyncio task in
embedded mode, an arq job in distributed mode). Storage is reached through `ExecutionSource`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engine import metrics, tracing
from engine.declarative import is_declarative
from engine.events import (
    ErrorInfo,
    Event,
    EventType,
    ExecutionUpdate,
    NodeRunState,
    Record,
    Recorder,
)
from engine.executor import (
    INTERRUPTIONS,
    LEASE_LOST,
    SHUTDOWN,
    Executor,
    Outcome,
    RunOptions,
    RunRequest,
    StartNodeError,
)
from engine.expressions.budget import DEFAULT_LIMITS, ExpressionLimits
from engine.graph import Graph
from engine.handover import RunHandover, webhook_waits
from engine.node_types import NodeTypeLookup, NodeTypeRegistry
from engine.nodes.base import Item, NodeResources, PortItems, RunInfo
from engine.output_limit import DEFAULT_MAX_NODE_OUTPUT_BYTES
from engine.partial import EarlierRun
from engine.plan import Plan, PlanCache, PlanError, prepare_plan
from engine.retention import SAVE_ALL, SaveChoice, SaveDefaults, save_choice
from engine.states import ExecutionStatus, NodeRunStatus

logger = logging.getLogger("loom.runner")


@dataclass(slots=True)
class LoadedExecution:
    """Everything needed to (re)start an execution."""

    execution_id: str
    workflow_id: str
    workflow_name: str
    version_id: str
    version: int
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    settings: dict[str, Any]
    status: ExecutionStatus
    mode: str
    input: Item
    start_node_id: str | None
    next_sequence: int
    input_bytes: int | None = None
    # The lease generation when loaded; a claim moves it on by one.
    generation: int = 0
    # Whether a process held its lease when loaded (a clean stop releases it).
    lease_held: bool = False
    cancel_requested: bool = False
    # A WAITING execution's parked attempts by node id, as stored (see `Executor` park).
    parked: dict[str, dict[str, Any]] = field(default_factory=dict)
    reuse: dict[str, PortItems] = field(default_factory=dict)
    # The snapshot's pinned items by node id, for a manual execution (others ignore pins).
    pinned: dict[str, list[Item]] = field(default_factory=dict)
    # A run to a node (engine/partial.py): the node, whether only it runs, and the outputs
    # of an earlier execution it reuses, with the node run that made each.
    destination_node_id: str | None = None
    node_only: bool = False
    reused: dict[str, PortItems] = field(default_factory=dict)
    reused_runs: dict[str, EarlierRun] = field(default_factory=dict)
    attempts_used: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    workspace_id: str = ""
    # A sub-workflow execution: its parent, whether the parent waits for it, and how many
    # calls deep it is.
    parent_execution_id: str | None = None
    parent_run_id: str | None = None
    parent_waits: bool = False
    depth: int = 0
    # The W3C traceparent of the span that created it (engine/tracing.py), if any.
    traceparent: str | None = None


class ExecutionSource(Protocol):
    """Storage as the runner needs it."""

    async def load(self, execution_id: str) -> LoadedExecution | None: ...

    async def claim(self, loaded: LoadedExecution) -> bool:
        """Atomically move the execution to RUNNING and record EXECUTION_STARTED (or
        RESUMED) at `loaded.next_sequence`, then move `next_sequence` past what it recorded
        (and `generation` on, where leases are kept); False if it is no longer runnable
        (cancelled, or claimed by someone else since it was loaded)."""
        ...

    async def load_and_claim(self, execution_id: str, generation: int) -> LoadedExecution | None:
        """Load and claim in one go, for a caller that knows the generation it claims; None
        if the execution is unknown, finished, or not at that generation or claimable."""
        ...

    async def release(self, loaded: LoadedExecution, *, resume_now: bool = False) -> None:
        """Give up the claim of an execution that did not finish here; with `resume_now`
        any process may claim it again at once."""
        ...

    async def cancel_unheld(self, execution_id: str) -> bool:
        """Cancel an execution no process holds (QUEUED, or WAITING after a durable wait)."""
        ...


def parked_attempts(loaded: LoadedExecution) -> dict[str, tuple[NodeRunState, datetime]]:
    """The stored parked attempts as the executor continues them."""
    parked: dict[str, tuple[NodeRunState, datetime]] = {}
    for node_id, entry in loaded.parked.items():
        started = entry.get("startedAt")
        state = NodeRunState(
            id=entry["runId"],
            node_id=node_id,
            node_name=entry.get("nodeName") or node_id,
            attempt=int(entry.get("attempt") or 1),
            status=NodeRunStatus.RUNNING,
            started_at=datetime.fromisoformat(started) if started else None,
            input_items=entry.get("inputItems"),
            stored=True,
        )
        parked[node_id] = (state, datetime.fromisoformat(entry["resumeAt"]))
    return parked


class Leases(Protocol):
    """Keeps the leases of running executions alive (distributed mode) and reports a lease
    lost to another process, or a cancel requested through storage."""

    def hold(
        self,
        execution_id: str,
        generation: int,
        on_lost: Callable[[], object],
        on_cancel: Callable[[], object],
    ) -> None: ...

    def drop(self, execution_id: str) -> None: ...


class ExecutionRunner:
    """Loads, plans and runs executions; shares one plan cache across them."""

    def __init__(
        self,
        source: ExecutionSource,
        recorder: Recorder,
        registry: NodeTypeRegistry,
        *,
        plan_cache: PlanCache | None = None,
        max_concurrency: int = 16,
        expression_limits: ExpressionLimits = DEFAULT_LIMITS,
        leases: Leases | None = None,
        on_finished: Callable[[LoadedExecution, Outcome], Awaitable[None]] | None = None,
        durable_wait_s: float | None = None,
        resources: NodeResources | None = None,
        max_node_output_bytes: int | None = DEFAULT_MAX_NODE_OUTPUT_BYTES,
        workspace_node_types: Callable[[str], Awaitable[NodeTypeLookup]] | None = None,
        save_defaults: SaveDefaults = SAVE_ALL,
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.registry = registry
        # The node types a workspace sees (the registry plus its declarative types,
        # storage/node_type_definitions.py), asked for when a plan that uses one is made.
        self.workspace_node_types = workspace_node_types
        self.plan_cache = plan_cache or PlanCache()
        self.max_concurrency = max_concurrency
        self.expression_limits = expression_limits
        self.leases = leases
        self.on_finished = on_finished
        # Waits longer than this park the execution (WAITING) and free this process.
        self.durable_wait_s = durable_wait_s
        self.resources = resources
        self.max_node_output_bytes = max_node_output_bytes
        # What ended executions keep when their workflow does not say (engine/retention.py).
        self.save_defaults = save_defaults
        self.executor = Executor(recorder)
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def running(self) -> list[str]:
        return list(self._tasks)

    def cancel(self, execution_id: str) -> bool:
        """Cancel the execution if it runs in this process (it records CANCELLED)."""
        task = self._tasks.get(execution_id)
        if task is None:
            return False
        task.cancel()
        return True

    def drain(self) -> None:
        """The process is stopping: running nodes finish, then each execution stops,
        recorded and resumable (see `Executor.drain`)."""
        self.executor.drain()

    def interrupt(self, execution_id: str, reason: str = LEASE_LOST) -> bool:
        """Stop running the execution here without ending it (`SHUTDOWN`, `LEASE_LOST`)."""
        task = self._tasks.get(execution_id)
        if task is None:
            return False
        task.cancel(reason)
        return True

    async def run(
        self,
        execution_id: str,
        generation: int | None = None,
        on_claimed: Callable[[], None] | None = None,
    ) -> Outcome | None:
        """Run the execution to its end; None if it is unknown, already finished, claimed by
        another process, or was taken over by one while it ran here.

        `generation` is the lease generation the caller expects (a queued job carries it): a
        job whose execution was claimed since it was queued does nothing. `on_claimed` is
        called once this process holds the execution.
        """
        # The claim runs to its end even when this task is cancelled meanwhile: once sent,
        # its COMMIT may land (aiosqlite commits in its thread), and a claim committed but
        # not seen here would leave the execution RUNNING with nobody running it.
        claim = asyncio.ensure_future(self._claim(execution_id, generation))
        try:
            loaded = await asyncio.shield(claim)
        except asyncio.CancelledError as exc:
            # A user's cancel of an execution not claimed yet ends it; the process stopping
            # (or losing a lease) leaves it for the next claim.
            interrupted = bool(exc.args) and exc.args[0] in INTERRUPTIONS
            try:
                held = await claim
            except Exception:
                logger.exception("execution %s: claim failed", execution_id)
                held = None
            if held is None:
                if not interrupted:
                    await asyncio.shield(self.source.cancel_unheld(execution_id))
                raise
            if interrupted:
                await asyncio.shield(self.source.release(held, resume_now=True))
                raise
            # Claimed as the cancel came: the run records the cancellation first thing.
            held.cancel_requested = True
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            loaded = held
        if loaded is None:
            return None
        if on_claimed is not None:
            on_claimed()
        return await self._run_held(loaded)

    async def _claim(self, execution_id: str, generation: int | None) -> LoadedExecution | None:
        """The execution loaded and claimed by this process; None if it is not to run here."""
        if generation is not None:
            return await self.source.load_and_claim(execution_id, generation)
        loaded = await self.source.load(execution_id)
        if loaded is None or loaded.status.is_terminal:
            return None
        return loaded if await self.source.claim(loaded) else None

    async def run_started(
        self, loaded: LoadedExecution, handover: RunHandover | None = None
    ) -> Outcome | None:
        """Run an execution this process inserted already claimed (embedded mode's one-write
        start, see `storage.starts`): nothing is read back; `handover`, if given, receives
        the run's answer in memory."""
        return await self._run_held(loaded, handover)

    async def _run_held(
        self, loaded: LoadedExecution, handover: RunHandover | None = None
    ) -> Outcome | None:
        execution_id = loaded.execution_id
        task = asyncio.current_task()
        assert task is not None
        self._tasks[execution_id] = task
        if self.leases is not None:
            self.leases.hold(
                execution_id,
                loaded.generation,
                on_lost=lambda: self.interrupt(execution_id, LEASE_LOST),
                on_cancel=lambda: self.cancel(execution_id),
            )
        outcome: Outcome | None = None
        held_at = time.monotonic()
        if not loaded.resumed:
            metrics.execution_started(loaded.mode, loaded.workflow_id)
        try:
            with tracing.execution_run(loaded) as span:
                outcome = await self._run_claimed(loaded, handover)
                tracing.record_outcome(span, outcome.status)
        except asyncio.CancelledError as exc:
            reason = exc.args[0] if exc.args else None
            if reason == LEASE_LOST:
                metrics.lease_lost()
            if reason in INTERRUPTIONS:
                await asyncio.shield(self.recorder.flush())
                if reason == SHUTDOWN:
                    await asyncio.shield(self.source.release(loaded, resume_now=True))
                    raise
                task.uncancel()  # LEASE_LOST: another process has it; nothing to record
                return None
            # Cancelled by a user: recorded; what follows a run still follows (a slot frees).
            outcome = Outcome(status=ExecutionStatus.CANCELLED)
            raise
        finally:
            self._tasks.pop(execution_id, None)
            if self.leases is not None:
                self.leases.drop(execution_id)
            if outcome is not None and outcome.status.is_terminal:
                status, ran_s = outcome.status.value, time.monotonic() - held_at
                metrics.execution_finished(loaded.mode, status, loaded.workflow_id, ran_s)
            if outcome is not None and self.on_finished is not None:
                try:
                    with tracing.log_ids(loaded):
                        await self.on_finished(loaded, outcome)
                except Exception:
                    logger.exception("after execution %s", execution_id)
        return outcome

    async def _run_claimed(
        self, loaded: LoadedExecution, handover: RunHandover | None = None
    ) -> Outcome:
        if loaded.cancel_requested:
            error = ErrorInfo("CANCELLED", "the execution was cancelled")
            return await self._refuse(loaded, error, ExecutionStatus.CANCELLED, handover)
        try:
            plan = await self.plan_cache.prepare(
                # A node run on its own has a plan of its own (see `_plan`).
                f"{loaded.version_id}/{loaded.destination_node_id}"
                if loaded.node_only
                else loaded.version_id,
                lambda: self._plan(loaded),
            )
        except PlanError as exc:
            problems = [problem.to_json() for problem in exc.problems]
            return await self._refuse(
                loaded,
                ErrorInfo("VALIDATION_FAILED", str(exc), {"problems": problems}),
                handover=handover,
            )
        timeout = loaded.settings.get("executionTimeoutSeconds")
        options = RunOptions(
            max_concurrency=self.max_concurrency,
            expression_limits=self.expression_limits,
            execution_timeout_s=float(timeout) if timeout else None,
            resources=self.resources,
            max_node_output_bytes=self.max_node_output_bytes,
        )
        request = RunRequest(
            execution_id=loaded.execution_id,
            plan=plan,
            info=RunInfo(
                execution_id=loaded.execution_id,
                mode=loaded.mode,
                workflow_id=loaded.workflow_id,
                workflow_name=loaded.workflow_name,
                workflow_version=loaded.version,
                workspace_id=loaded.workspace_id,
                now=datetime.now(UTC).isoformat(),
                durable_wait_s=self.durable_wait_s,
                depth=loaded.depth,
            ),
            input=loaded.input,
            input_bytes=loaded.input_bytes,
            parked=parked_attempts(loaded),
            start_node_id=loaded.start_node_id,
            next_sequence=loaded.next_sequence,
            reuse=loaded.reuse,
            pinned=loaded.pinned,
            destination_node_id=loaded.destination_node_id,
            node_items=loaded.input.get("items") if loaded.node_only else None,
            reused=loaded.reused,
            reused_runs=loaded.reused_runs,
            attempts_used=loaded.attempts_used,
            resumed=loaded.resumed,
            announced=True,
            handover=handover,
            save=self._save_choice(loaded, handover),
        )
        try:
            return await self.executor.run(request, options)
        except StartNodeError as exc:
            return await self._refuse(
                loaded, ErrorInfo("INVALID_START_NODE", str(exc)), handover=handover
            )

    def _save_choice(self, loaded: LoadedExecution, handover: RunHandover | None) -> SaveChoice:
        """What the execution keeps once it ends. Everything when its outcome is read back
        from the database: by a caller that waits for it (a sub-workflow), or by a webhook
        that answers with its data from another process (no handover in memory)."""
        read_back = loaded.parent_waits or (
            loaded.mode == "webhook"
            and handover is None
            and _webhook_waits(loaded.nodes, loaded.start_node_id)
        )
        return save_choice(
            loaded.settings, loaded.mode, self.save_defaults, answer_read_back=read_back
        )

    async def _plan(self, loaded: LoadedExecution) -> Plan:
        """The version's plan, made with the node types its workspace sees. The plan cache
        may keep it by version id: a snapshot pins every node's type version, and a stored
        version of a declarative type never changes."""
        node_types: NodeTypeLookup = self.registry
        if self.workspace_node_types is not None and any(
            isinstance(node, dict) and is_declarative(str(node.get("type", "")))
            for node in loaded.nodes
        ):
            node_types = await self.workspace_node_types(loaded.workspace_id)
        graph = Graph.from_json(loaded.nodes, loaded.edges)
        # A node run on its own needs only that node to be valid (`executeNode`).
        only = loaded.destination_node_id if loaded.node_only else None
        return await prepare_plan(loaded.version_id, graph, node_types, only=only)

    async def _refuse(
        self,
        loaded: LoadedExecution,
        error: ErrorInfo,
        status: ExecutionStatus = ExecutionStatus.FAILED,
        handover: RunHandover | None = None,
    ) -> Outcome:
        """Record that a claimed execution could not run: it ends at once."""
        if handover is not None:
            handover.ended(status, error)
        now = datetime.now(UTC)
        saved_data = self._save_choice(loaded, handover).for_status(status)
        update = ExecutionUpdate(status=status, finished_at=now, error=error, saved_data=saved_data)
        event = Event(
            execution_id=loaded.execution_id,
            sequence=loaded.next_sequence,
            type=EventType.EXECUTION_FINISHED,
            at=now,
            status=update.status.value,
            error=error,
        )
        self.recorder.emit(Record(event=event, execution=update))
        await self.recorder.flush()
        return Outcome(status=status, error=error, last_sequence=loaded.next_sequence)


def _webhook_waits(nodes: list[dict[str, Any]], start_node_id: str | None) -> bool:
    """Whether the webhook that started a run answers with what the run produced."""
    for node in nodes:
        if isinstance(node, dict) and node.get("id") == start_node_id:
            return webhook_waits(node.get("parameters"))
    return False
