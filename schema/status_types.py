"""What `systemStatus` shows an admin: the processes alive, the executions not ended, the
database's size and the last prune."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.results import ForbiddenError


@strawberry.type(description="A Loom process as its last heartbeat describes it.")
class ProcessStatus:
    id: str = strawberry.field(description="The process's name: host, pid and a random part.")
    role: str = strawberry.field(description="`api` (`loom serve`) or `worker` (`loom worker`).")
    version: str = strawberry.field(description="The Loom version it runs.")
    host: str = strawberry.field(description="The machine (host name) it runs on.")
    pid: int = strawberry.field(description="Its process id on that machine.")
    started_at: datetime = strawberry.field(description="When it started.")
    last_heartbeat_at: datetime = strawberry.field(
        description="When it last wrote its heartbeat (every `LOOM_HEARTBEAT_S`)."
    )
    alive: bool = strawberry.field(
        description="Whether its heartbeat is recent (within three intervals); false: it was "
        "killed, hangs or cannot reach the database. Stopped cleanly, it is not listed."
    )


@strawberry.type(description="Rows one table lost to a prune.")
class PrunedTable:
    table: str = strawberry.field(description="The table's name.")
    rows: int = strawberry.field(description="Rows deleted from it.")


@strawberry.type(description="The latest background prune of old executions (retention).")
class PruneSummary:
    started_at: datetime = strawberry.field(description="When it started.")
    finished_at: datetime | None = strawberry.field(
        description="When it finished; null while it runs."
    )
    executions_deleted: int = strawberry.field(description="Executions it deleted.")
    rows_deleted: list[PrunedTable] = strawberry.field(
        description="Rows it deleted, by table (the executions' node runs, events and "
        "payloads included), sorted by table."
    )


@strawberry.type(description="The whole system at a glance (admins only).")
class SystemStatus:
    processes: list[ProcessStatus] = strawberry.field(
        description="Every process alive (API processes first, then workers, each by start), "
        "then the 50 not alive seen most recently, newest first."
    )
    dead_processes_not_listed: int = strawberry.field(
        description="Processes not alive left out of `processes` (beyond the 50 listed); "
        "their heartbeats are removed after `LOOM_HEARTBEAT_FORGET_S`."
    )
    queue_depth: int = strawberry.field(description="Executions QUEUED.")
    oldest_queued_age_seconds: float | None = strawberry.field(
        description="How long the oldest QUEUED execution has waited; null if none does."
    )
    running_count: int = strawberry.field(description="Executions RUNNING.")
    waiting_count: int = strawberry.field(
        description="Executions WAITING (a durable wait or sub-workflow calls)."
    )
    # A Float: GraphQL's Int stops at 2^31 - 1 (2 GiB); a Float holds whole numbers exactly
    # up to 2^53.
    database_size_bytes: float | None = strawberry.field(
        description="The database's size in bytes (a whole number; a Float because GraphQL's "
        "Int stops at 2 GiB): SQLite, its file's pages (free ones included); "
        "PostgreSQL, Loom's tables with their indexes and TOAST; null if PostgreSQL did not "
        "answer within 2 s (a table locked exclusively, by a migration or a VACUUM FULL)."
    )
    last_prune: PruneSummary | None = strawberry.field(
        description="The latest prune of old executions (retention); null if none ran yet."
    )


SystemStatusResult = Annotated[
    SystemStatus | ForbiddenError,
    strawberry.union(
        "SystemStatusResult",
        description="The system's status, or ForbiddenError for anyone but an admin.",
    ),
]
