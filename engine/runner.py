"""Running an execution by id: load it, compile (or reuse) its plan, run it, record it.

The same runner serves both modes; only what calls `run` differs (an asyncio task in
embedded mode, an arq job in distributed mode). Storage is reached through `ExecutionSource`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.events import ErrorInfo, Event, EventType, ExecutionUpdate, Record, Recorder
from engine.executor import Executor, Outcome, RunOptions, RunRequest, StartNodeError
from engine.graph import Graph
from engine.node_types import NodeTypeRegistry
from engine.nodes.base import Item, PortItems, RunInfo
from engine.plan import PlanCache, PlanError, compile_plan
from engine.states import ExecutionStatus

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
    reuse: dict[str, PortItems] = field(default_factory=dict)
    attempts_used: dict[str, int] = field(default_factory=dict)
    resumed: bool = False


class ExecutionSource(Protocol):
    """Storage as the runner needs it."""

    async def load(self, execution_id: str) -> LoadedExecution | None: ...

    async def claim(self, loaded: LoadedExecution) -> bool:
        """Atomically move the execution to RUNNING and record EXECUTION_STARTED (or
        RESUMED) at `loaded.next_sequence`; False if it is no longer runnable (cancelled)."""
        ...

    async def cancel_queued(self, execution_id: str) -> bool:
        """Cancel an execution that was never claimed."""
        ...


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
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.registry = registry
        self.plan_cache = plan_cache or PlanCache()
        self.max_concurrency = max_concurrency
        self.executor = Executor(recorder)

    async def run(self, execution_id: str) -> Outcome | None:
        """Run the execution to its end; None if it is unknown or already finished."""
        claimed = False
        try:
            loaded = await self.source.load(execution_id)
            if loaded is None or loaded.status.is_terminal:
                return None
            claimed = await self.source.claim(loaded)
            if not claimed:
                return None
        except asyncio.CancelledError:
            if not claimed:
                await asyncio.shield(self.source.cancel_queued(execution_id))
            raise
        loaded.next_sequence += 1
        try:
            plan = self.plan_cache.get(
                loaded.version_id,
                lambda: compile_plan(
                    loaded.version_id,
                    Graph.from_json(loaded.nodes, loaded.edges),
                    self.registry,
                ),
            )
        except PlanError as exc:
            problems = [problem.to_json() for problem in exc.problems]
            return await self._refuse(
                loaded, ErrorInfo("VALIDATION_FAILED", str(exc), {"problems": problems})
            )
        timeout = loaded.settings.get("executionTimeoutSeconds")
        options = RunOptions(
            max_concurrency=self.max_concurrency,
            execution_timeout_s=float(timeout) if timeout else None,
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
                now=datetime.now(UTC).isoformat(),
            ),
            input=loaded.input,
            input_bytes=loaded.input_bytes,
            start_node_id=loaded.start_node_id,
            next_sequence=loaded.next_sequence,
            reuse=loaded.reuse,
            attempts_used=loaded.attempts_used,
            resumed=loaded.resumed,
            announced=True,
        )
        try:
            return await self.executor.run(request, options)
        except StartNodeError as exc:
            return await self._refuse(loaded, ErrorInfo("INVALID_START_NODE", str(exc)))

    async def _refuse(self, loaded: LoadedExecution, error: ErrorInfo) -> Outcome:
        """Record that a claimed execution could not run: it fails at once."""
        now = datetime.now(UTC)
        update = ExecutionUpdate(status=ExecutionStatus.FAILED, finished_at=now, error=error)
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
        return Outcome(
            status=ExecutionStatus.FAILED, error=error, last_sequence=loaded.next_sequence
        )
