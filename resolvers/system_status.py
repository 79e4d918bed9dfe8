"""`systemStatus`: what an admin sees of the whole system (storage/system_status.py)."""

from __future__ import annotations

import strawberry

from resolvers.context import Context
from schema import results
from schema.status_types import (
    ProcessStatus,
    PrunedTable,
    PruneSummary,
    SystemStatus,
    SystemStatusResult,
)
from storage import retention, system_status
from storage.types import utcnow

Info = strawberry.Info[Context, None]


async def system_status_of(info: Info) -> SystemStatusResult:
    if not info.context.viewer().is_admin:
        return results.ForbiddenError(message="only an admin may see the system status")
    database = info.context.database
    async with database.session() as session:
        seen = await system_status.processes(database, session)
        counts = await system_status.execution_counts(session)
        size = await system_status.database_size_bytes(database, session)
        prune = await retention.last_prune(session)
    oldest = counts.oldest_queued_at
    return SystemStatus(
        processes=[
            ProcessStatus(
                id=process.id,
                role=process.role,
                version=process.version,
                host=process.host,
                pid=process.pid,
                started_at=process.started_at,
                last_heartbeat_at=process.last_seen_at,
                alive=process.alive,
            )
            for process in seen.listed
        ],
        dead_processes_not_listed=seen.dead_not_listed,
        queue_depth=counts.queued,
        oldest_queued_age_seconds=(
            None if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())
        ),
        running_count=counts.running,
        waiting_count=counts.waiting,
        database_size_bytes=size,
        last_prune=None
        if prune is None
        else PruneSummary(
            started_at=prune.started_at,
            finished_at=prune.finished_at,
            executions_deleted=prune.executions_deleted,
            rows_deleted=[
                PrunedTable(table=table, rows=rows)
                for table, rows in sorted(prune.rows_deleted.items())
            ],
        ),
    )
