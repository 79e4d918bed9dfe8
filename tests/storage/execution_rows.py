"""Many ended executions, inserted fast (bulk Core inserts): what pruning tests and
bench/retention.py start from. Each has `NODES` node runs with their output payloads, its
input payload, and the events of a run (started, each node started and succeeded, finished).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert
from sqlmodel import SQLModel

from storage import payloads
from storage.db import Database
from storage.types import utcnow

NODES = 2
# Rows of each table per execution inserted here.
PER_EXECUTION = {
    "executions": 1,
    "node_runs": NODES,
    "node_run_payloads": NODES,
    "execution_payloads": 1,
    "execution_events": 2 + 2 * NODES,
}
_CHUNK = 1000


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


@dataclass(frozen=True)
class Owner:
    workspace_id: str
    workflow_id: str
    version_id: str


async def make_workflow(database: Database, settings: dict[str, Any] | None = None) -> Owner:
    """A workspace (new), a workflow and its first version."""
    owner = Owner(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))
    now = utcnow()
    async with database.transaction() as session:
        connection = await session.connection()
        await connection.execute(
            insert(_table("workspaces")), {"id": owner.workspace_id, "name": "w", "created_at": now}
        )
        common = {"name": "wf", "nodes": [], "edges": [], "settings": settings or {}}
        await connection.execute(
            insert(_table("workflows")),
            {
                "id": owner.workflow_id,
                "workspace_id": owner.workspace_id,
                "description": "",
                "tags": [],
                "node_issues": {},
                "pinned_data": {},
                "version": 1,
                "active": False,
                "created_at": now,
                "updated_at": now,
                **common,
            },
        )
        await connection.execute(
            insert(_table("workflow_versions")),
            {
                "id": owner.version_id,
                "workflow_id": owner.workflow_id,
                "version": 1,
                "pinned_data": {},
                "created_at": now,
                **common,
            },
        )
    return owner


async def insert_executions(
    database: Database,
    owner: Owner,
    count: int,
    *,
    status: str = "SUCCEEDED",
    oldest: datetime | None = None,
    step: timedelta = timedelta(seconds=1),
    **columns: Any,
) -> list[str]:
    """`count` executions created `step` apart from `oldest` on (default: `count` steps
    ago), in bulk; returns their ids, oldest first."""
    start = oldest or utcnow() - step * (count + 1)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    data = payloads.compress(b'{"main":[{"n":1}]}')
    for first in range(0, count, _CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in PER_EXECUTION}
        for index in range(first, min(first + _CHUNK, count)):
            execution_id = ids[index]
            at = start + step * index
            rows["executions"].append(
                {
                    "id": execution_id,
                    "workspace_id": owner.workspace_id,
                    "workflow_id": owner.workflow_id,
                    "workflow_version_id": owner.version_id,
                    "workflow_version": 1,
                    "status": status,
                    "mode": "webhook",
                    "engine_version": "test",
                    "created_at": at,
                    "started_at": at,
                    "finished_at": at,
                    **columns,
                }
            )
            rows["execution_payloads"].append(
                {
                    "execution_id": execution_id,
                    "kind": "input",
                    "encoding": payloads.ENCODING,
                    "raw_bytes": 10,
                    "data": data,
                }
            )
            events = [("EXECUTION_STARTED", None)]
            for node in range(NODES):
                run_id = str(uuid.uuid4())
                node_id = f"n{node}"
                rows["node_runs"].append(
                    {
                        "id": run_id,
                        "execution_id": execution_id,
                        "node_id": node_id,
                        "node_name": node_id,
                        "status": "SUCCEEDED",
                        "attempt": 1,
                        "created_at": at,
                    }
                )
                rows["node_run_payloads"].append(
                    {
                        "node_run_id": run_id,
                        "execution_id": execution_id,
                        "encoding": payloads.ENCODING,
                        "raw_bytes": 18,
                        "data": data,
                    }
                )
                events += [("NODE_STARTED", node_id), ("NODE_SUCCEEDED", node_id)]
            events.append(("EXECUTION_FINISHED", None))
            rows["execution_events"] += [
                {
                    "execution_id": execution_id,
                    "sequence": sequence,
                    "type": kind,
                    "at": at,
                    "node_id": node_id,
                }
                for sequence, (kind, node_id) in enumerate(events, 1)
            ]
        async with database.transaction() as session:
            connection = await session.connection()
            for name in (
                "executions",
                "node_runs",
                "node_run_payloads",
                "execution_payloads",
                "execution_events",
            ):
                await connection.execute(insert(_table(name)), rows[name])
    return ids
