"""The storage side of `bench/engine.py`: a SQLite database seeded as the API would seed it,
runners recording to it through one `GroupCommitWriter`, and what was stored."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine_workloads import TEN_NODE_INPUT
from sqlalchemy import func
from sqlmodel import col, select

from engine.events import Record
from engine.graph import Graph
from engine.node_types import NodeTypeRegistry
from engine.nodes.base import Item
from engine.plan import PlanCache
from engine.runner import ExecutionRunner, LoadedExecution
from engine.states import ExecutionStatus
from storage import accounts, executions, workflows
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.migrate import upgrade
from storage.models import ExecutionEventRow, NodeRun, NodeRunPayload, Workflow, WorkflowVersion
from storage.recorder import GroupCommitWriter


@dataclass(slots=True)
class Seeded:
    workflow: Workflow
    snapshot: WorkflowVersion


async def open_database(path: Path, *, migrate: bool = True) -> Database:
    database = Database(f"sqlite+aiosqlite:///{path}")
    if migrate:
        await upgrade(database)
    return database


async def seed(database: Database, graph: Graph, name: str) -> Seeded:
    """A user (with their workspace), the workflow and the snapshot executions pin."""
    async with database.transaction() as session:
        user = await accounts.create_user(session, "bench")
        workflow = Workflow(
            workspace_id=user.personal_workspace_id,
            name=name,
            nodes=graph.nodes_to_json(),
            edges=graph.edges_to_json(),
            settings={},
            created_by=user.id,
        )
        await workflows.create_workflow(session, workflow)
        snapshot = await workflows.ensure_snapshot(session, workflow, user.id)
    return Seeded(workflow, snapshot)


async def queue(database: Database, seeded: Seeded, count: int, input: Item) -> list[str]:
    """`count` QUEUED executions (with their EXECUTION_QUEUED event), as the API creates them."""
    ids: list[str] = []
    async with database.transaction() as session:
        for _ in range(count):
            execution = await executions.create_execution(
                session,
                workflow=seeded.workflow,
                snapshot=seeded.snapshot,
                mode="manual",
                input=input,
                created_by=None,
            )
            ids.append(execution.id)
    return ids


async def stored_counts(database: Database, execution_id: str) -> dict[str, int]:
    """What the database holds for one execution: events, node runs, payload bytes."""
    async with database.session() as session:
        events = await session.exec(
            select(func.count()).where(col(ExecutionEventRow.execution_id) == execution_id)
        )
        runs = await session.exec(
            select(func.count()).where(col(NodeRun.execution_id) == execution_id)
        )
        payloads = await session.exec(
            select(
                func.count(),
                func.coalesce(func.sum(NodeRunPayload.raw_bytes), 0),
                func.coalesce(func.sum(func.length(NodeRunPayload.data)), 0),
            ).where(col(NodeRunPayload.execution_id) == execution_id)
        )
        payload_count, raw_bytes, stored_bytes = payloads.one()
        return {
            "events": int(events.one()),
            "node_runs": int(runs.one()),
            "payloads": int(payload_count),
            "payload_raw_bytes": int(raw_bytes),
            "payload_stored_bytes": int(stored_bytes),
        }


class TimedSource:
    """`DatabaseExecutionSource`, timing the runner's load and claim."""

    def __init__(self, database: Database) -> None:
        self.inner = DatabaseExecutionSource(database, GroupCommitWriter(database))
        self.load_s = 0.0
        self.claim_s = 0.0

    async def load(self, execution_id: str) -> LoadedExecution | None:
        started = time.perf_counter()
        loaded = await self.inner.load(execution_id)
        self.load_s += time.perf_counter() - started
        return loaded

    async def claim(self, loaded: LoadedExecution) -> bool:
        started = time.perf_counter()
        claimed = await self.inner.claim(loaded)
        self.claim_s += time.perf_counter() - started
        return claimed

    async def cancel_unheld(self, execution_id: str) -> bool:
        return await self.inner.cancel_unheld(execution_id)

    async def release(self, loaded: LoadedExecution, *, resume_now: bool = False) -> None:
        await self.inner.release(loaded, resume_now=resume_now)

    async def load_and_claim(self, execution_id: str, generation: int) -> LoadedExecution | None:
        return await self.inner.load_and_claim(execution_id, generation)


class TimedRecorder:
    """The writer, timing how long the executor waits for it: held back while too many
    payload bytes wait to be stored (`throttle`), and for the last commit (`flush`)."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self.writer = writer
        self.flush_s = 0.0
        self.throttle_s = 0.0

    def emit(self, record: Record) -> None:
        self.writer.emit(record)

    async def flush(self) -> None:
        started = time.perf_counter()
        await self.writer.flush()
        self.flush_s += time.perf_counter() - started

    async def throttle(self) -> None:
        started = time.perf_counter()
        await self.writer.throttle()
        self.throttle_s += time.perf_counter() - started


@dataclass(slots=True)
class Recording:
    """A started writer and a runner on it."""

    database: Database
    writer: GroupCommitWriter
    runner: ExecutionRunner

    async def close(self) -> None:
        await self.writer.stop()
        await self.database.dispose()


async def recording(
    database: Database,
    registry: NodeTypeRegistry,
    *,
    plan_cache: PlanCache | None = None,
    max_concurrency: int = 16,
    timed_parts: bool = False,
) -> Recording:
    writer = GroupCommitWriter(database)
    await writer.start()
    source: Any = (
        TimedSource(database)
        if timed_parts
        else DatabaseExecutionSource(database, GroupCommitWriter(database))
    )
    recorder: Any = TimedRecorder(writer) if timed_parts else writer
    runner = ExecutionRunner(
        source, recorder, registry, plan_cache=plan_cache, max_concurrency=max_concurrency
    )
    return Recording(database, writer, runner)


class MemorySource:
    """The runner's storage port without storage: every id loads the same queued execution."""

    def __init__(self, seeded: Seeded) -> None:
        self.snapshot = seeded.snapshot

    async def load(self, execution_id: str) -> LoadedExecution | None:
        return LoadedExecution(
            execution_id=execution_id,
            workflow_id=self.snapshot.workflow_id,
            workflow_name=self.snapshot.name,
            version_id=self.snapshot.id,
            version=self.snapshot.version,
            nodes=self.snapshot.nodes,
            edges=self.snapshot.edges,
            settings=self.snapshot.settings,
            status=ExecutionStatus.QUEUED,
            mode="manual",
            input=dict(TEN_NODE_INPUT),
            start_node_id=None,
            next_sequence=2,
        )

    async def claim(self, loaded: LoadedExecution) -> bool:
        loaded.next_sequence += 1
        return True

    async def release(self, loaded: LoadedExecution, *, resume_now: bool = False) -> None:
        return None

    async def load_and_claim(self, execution_id: str, generation: int) -> LoadedExecution | None:
        loaded = await self.load(execution_id)
        return loaded if loaded is not None and await self.claim(loaded) else None

    async def cancel_unheld(self, execution_id: str) -> bool:
        return False
