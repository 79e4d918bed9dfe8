"""Pruning ended executions: how long they stay, by age and by count.

Server-wide bounds (`RetentionPolicy`, from `LOOM_EXECUTIONS_*`) and per-workflow ones (its
settings, engine/retention.py) each name a maximum age, a maximum count and, optionally, a
maximum age for failed (and cancelled) executions, which are then pruned by that age only:
a workflow with retention settings of its own has its own bounds (the server's age bounds
where it names none; its own count or none); the server's count bounds the executions of
all the other workflows together. An execution is pruned with its node runs, payloads and
events, in batches of `batch_size` executions, one transaction each, so that writers never
wait long; never one still queued, running or waiting, nor one that an unfinished
execution needs (the execution a retry or a run to a node reuses, a sub-workflow execution
whose caller waits for it).

One process prunes at a time: PostgreSQL through an advisory lock that the others try and
skip (keyed by the schema too: advisory locks are per database, and two installations in
two schemas of one database prune each their own). SQLite: one prune at a time per process
(a lock in memory); embedded mode has one process per file, and `loom executions prune` run
beside it prunes at the same time, its batches serialised with the server's by SQLite's
single writer (docs/operations.md). SQLite gets the space back by incremental auto-vacuum
(`ensure_incremental_vacuum`, `vacuum`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Table,
    and_,
    delete,
    func,
    insert,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import retention as settings_keys
from engine.retention import SaveData
from engine.states import ExecutionStatus
from storage.db import SQLITE_BUSY_TIMEOUT_MS, Database, run_core
from storage.executions import UNFINISHED
from storage.models import (
    AuditEvent,
    Execution,
    ExecutionEventRow,
    ExecutionPayload,
    NodeRun,
    NodeRunPayload,
    PruneRun,
    ScheduleTick,
    Workflow,
)
from storage.types import utcnow

logger = logging.getLogger("loom.retention")

_EXECUTIONS: Table = Execution.__table__  # type: ignore[attr-defined]
_WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
_PRUNE_RUNS: Table = PruneRun.__table__  # type: ignore[attr-defined]
_TICKS: Table = ScheduleTick.__table__  # type: ignore[attr-defined]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[attr-defined]
# Audit records deleted per transaction: small rows, no children.
_AUDIT_BATCH = 1000
# Schedule ticks kept (`_prune_ticks`).
_KEEP_TICKS = timedelta(days=1)
# Deleted in this order, each by execution id: rows that refer to others first.
_CHILD_TABLES: tuple[Table, ...] = (
    ExecutionEventRow.__table__,  # type: ignore[attr-defined]
    NodeRunPayload.__table__,  # type: ignore[attr-defined]
    ExecutionPayload.__table__,  # type: ignore[attr-defined]
    NodeRun.__table__,  # type: ignore[attr-defined]
)
TABLES = (*(table.name for table in _CHILD_TABLES), "executions")
_FAILED = [ExecutionStatus.FAILED.value, ExecutionStatus.CANCELLED.value]
_LOCK_NAME = "loom.retention.prune"
# The advisory lock's key, for the schema the connection uses.
_LOCK_KEY = "hashtextextended(:name || '.' || current_schema(), 0)"
_SQLITE = sqlite_dialect.dialect(paramstyle="qmark")
# Prune records kept: the newest ones (systemStatus shows the last).
_KEEP_PRUNE_RECORDS = 100
# Pages freed per SQLite transaction by `vacuum`: each is a short write.
_VACUUM_PAGES = 2000
# Ids per statement when counting what a dry run would delete.
_CHUNK = 500

PrunedListener = Callable[[dict[str, int]], None]
# Called with the rows each prune deleted, by table (the metrics hook).
PRUNED_LISTENERS: list[PrunedListener] = []


def on_pruned(counts: dict[str, int]) -> None:
    """Tell the listeners (none by default) what a prune deleted, by table."""
    for listener in PRUNED_LISTENERS:
        try:
            listener(counts)
        except Exception:
            logger.exception("a prune listener failed")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Server-wide bounds of how long ended executions stay; None: no bound."""

    max_age_hours: float | None = None
    max_count: int | None = None
    failed_max_age_hours: float | None = None
    batch_size: int = 50
    # Between two batches: lets the other writers in and the API breathe.
    pause_s: float = 0.05
    # Executions that kept none of their data (`saved_data` `none`) are pruned this long
    # after their end, whatever the bounds above: until then whoever reads their end back
    # (a cancel, a webhook's repeat, a late subscriber) finds it.
    none_after_s: float = 60.0
    # Audit log records older than this are deleted by every full prune (storage/audit.py).
    audit_max_age_hours: float | None = None

    def with_workflow(self, settings: Mapping[str, Any]) -> RetentionPolicy:
        """This policy as a workflow's settings change it for its own executions."""
        # JSON Schema's integer admits 5.0; a stored value is checked again here (a bad
        # one raises, and only that workflow's executions go unpruned, see `_conditions`).
        count = settings.get(settings_keys.MAX_COUNT)
        return RetentionPolicy(
            max_age_hours=_number(settings.get(settings_keys.MAX_AGE_HOURS, self.max_age_hours)),
            max_count=None if count is None else _whole(count),
            failed_max_age_hours=_number(
                settings.get(settings_keys.FAILED_MAX_AGE_HOURS, self.failed_max_age_hours)
            ),
            batch_size=self.batch_size,
            pause_s=self.pause_s,
            none_after_s=self.none_after_s,
            audit_max_age_hours=self.audit_max_age_hours,
        )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"not a positive number: {value!r}")
    return float(value)


def _whole(value: Any) -> int:
    number = _number(value)
    if number is None or not number.is_integer():
        raise ValueError(f"not a positive whole number: {value!r}")
    return int(number)


@dataclass(frozen=True)
class PruneRecord:
    """One prune: when, and how many rows it deleted (`rows_deleted` by table)."""

    started_at: datetime
    finished_at: datetime
    executions_deleted: int
    rows_deleted: dict[str, int]


@dataclass(slots=True)
class _Tally:
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))

    def add(self, table: str, count: int) -> None:
        self.rows[table] += max(count, 0)


def _overridden(settings: Mapping[str, Any]) -> bool:
    return any(
        key in settings
        for key in (
            settings_keys.MAX_AGE_HOURS,
            settings_keys.MAX_COUNT,
            settings_keys.FAILED_MAX_AGE_HOURS,
        )
    )


def _prunable() -> ColumnElement[bool]:
    """Ended, and needed by no unfinished execution."""
    table = _EXECUTIONS
    other = table.alias("needing")
    caller = table.alias("caller")
    unfinished = other.c.status.in_(UNFINISHED)
    return and_(
        # Not `status IN (ended)`: the planner would then walk the status index over
        # every ended execution and sort them; this way it walks `created_at`.
        table.c.status.not_in(UNFINISHED),
        not_(
            table.c.id.in_(
                select(other.c.retry_of).where(unfinished, other.c.retry_of.is_not(None))
            )
        ),
        not_(
            table.c.id.in_(
                select(other.c.reuse_from).where(unfinished, other.c.reuse_from.is_not(None))
            )
        ),
        not_(
            and_(
                table.c.parent_waits.is_(True),
                select(caller.c.id)
                .where(
                    caller.c.id == table.c.parent_execution_id,
                    caller.c.status.in_(UNFINISHED),
                )
                .exists(),
            )
        ),
    )


async def _nth_newest(
    connection: AsyncConnection, scope: ColumnElement[bool], count: int
) -> datetime | None:
    """The creation time of the `count`th newest execution in `scope`: older ones are
    beyond the count."""
    query = (
        select(_EXECUTIONS.c.created_at)
        .where(scope)
        .order_by(_EXECUTIONS.c.created_at.desc())
        .offset(count - 1)
        .limit(1)
    )
    return (await connection.execute(query)).scalar_one_or_none()


def _discarded(policy: RetentionPolicy, now: datetime) -> ColumnElement[bool]:
    """Executions that kept none of their data, ended longer than the grace period ago (a
    cheap query: a partial index holds only them)."""
    table = _EXECUTIONS
    return and_(
        table.c.saved_data == SaveData.NONE.value,
        table.c.finished_at < now - timedelta(seconds=policy.none_after_s),
    )


async def _conditions(
    database: Database, policy: RetentionPolicy, now: datetime
) -> list[ColumnElement[bool]]:
    """What makes an execution old enough to prune, rule by rule (each pruned in turn)."""
    table = _EXECUTIONS
    async with database.engine.connect() as connection:
        rows = (await connection.execute(select(_WORKFLOWS.c.id, _WORKFLOWS.c.settings))).all()
        overrides: dict[str, RetentionPolicy | None] = {}
        for workflow_id, settings in rows:
            if isinstance(settings, dict) and _overridden(settings):
                try:
                    overrides[workflow_id] = policy.with_workflow(settings)
                except ValueError as exc:
                    # Its executions are left alone; the others are pruned.
                    logger.error("workflow %s: bad retention settings: %s", workflow_id, exc)
                    overrides[workflow_id] = None
        scopes: list[tuple[ColumnElement[bool], RetentionPolicy]] = [
            (table.c.workflow_id.not_in(list(overrides)), policy)
        ]
        scopes += [
            (table.c.workflow_id == workflow_id, rule)
            for workflow_id, rule in overrides.items()
            if rule is not None
        ]
        conditions: list[ColumnElement[bool]] = [_discarded(policy, now)]
        ended = table.c.status.not_in(UNFINISHED)
        for scope, rule in scopes:
            # Failed and cancelled executions (what saveDataOnError covers).
            failed = table.c.status.in_(_FAILED)
            not_failed = not_(failed) if rule.failed_max_age_hours else None
            if rule.max_age_hours is not None:
                cutoff = now - timedelta(hours=rule.max_age_hours)
                conditions.append(_all(scope, table.c.created_at < cutoff, not_failed))
            if rule.failed_max_age_hours is not None:
                cutoff = now - timedelta(hours=rule.failed_max_age_hours)
                conditions.append(_all(scope, failed, table.c.created_at < cutoff))
            # The server's count bounds the executions of the workflows without settings of
            # their own together; a workflow's own count, its executions. Counted: the ended
            # executions the count prunes (not the unfinished ones, nor failed ones kept by
            # their own age).
            if rule.max_count is not None:
                counted = _all(scope, ended, not_failed)
                newest = await _nth_newest(connection, counted, rule.max_count)
                if newest is not None:
                    conditions.append(_all(counted, table.c.created_at < newest))
    return conditions


def _all(*conditions: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return and_(*(condition for condition in conditions if condition is not None))


def _recheck(ids: list[str]) -> Select[Any]:
    """The ids of a batch still prunable, in the write that deletes them: a retry or run to
    a node that names one may have been created since the batch was selected."""
    return select(_EXECUTIONS.c.id).where(_EXECUTIONS.c.id.in_(ids), _prunable())


def _deletes(ids: list[str]) -> Iterator[tuple[str, Delete]]:
    """The statements that delete a batch, by table: rows that refer to others first."""
    for child in _CHILD_TABLES:
        yield child.name, delete(child).where(child.c.execution_id.in_(ids))
    yield "executions", delete(_EXECUTIONS).where(_EXECUTIONS.c.id.in_(ids))


async def _delete_batch(session: AsyncSession, ids: list[str], tally: _Tally) -> None:
    """PostgreSQL: the batch was selected `FOR UPDATE SKIP LOCKED` in this transaction (an
    execution whose retry is being inserted is skipped, and one inserted from now on waits
    for the commit, then fails its foreign key); checked again all the same."""
    kept = list((await run_core(session, _recheck(ids))).scalars())
    if kept:
        for table, statement in _deletes(kept):
            tally.add(table, (await run_core(session, statement)).rowcount)


def _sqlite_file(database: Database) -> str | None:
    path = database.url.database
    return path if database.is_sqlite and path and path != ":memory:" else None


def _delete_in_file(path: str, ids: list[str]) -> dict[str, int]:
    """SQLite: delete a batch on a connection of its own, on a thread. SQLite calls of the
    process's own connections run on the event loop (storage/sqlite_inline.py): a batch of
    deletes there would stall every request meanwhile; here only writers wait for it, and
    they wait with the loop running. The batch is checked again in the write transaction."""
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    deleted: dict[str, int] = {}
    try:
        # Deleting an execution sets what names it to NULL (retry_of, schedule ticks, ...).
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("BEGIN IMMEDIATE")
        try:
            kept = [row[0] for row in _run_sqlite(connection, _recheck(ids))]
            for table, statement in _deletes(kept) if kept else ():
                deleted[table] = _run_sqlite(connection, statement).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    finally:
        connection.close()
    return deleted


def _run_sqlite(connection: sqlite3.Connection, statement: Delete | Select[Any]) -> sqlite3.Cursor:
    compiled = statement.compile(dialect=_SQLITE, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    return connection.execute(str(compiled), [params[name] for name in compiled.positiontup or ()])


async def _count_rows(database: Database, ids: list[str], tally: _Tally) -> None:
    async with database.engine.connect() as connection:
        for chunk in _chunks(ids):
            for child in _CHILD_TABLES:
                query = select(func.count()).where(child.c.execution_id.in_(chunk))
                tally.add(child.name, (await connection.execute(query)).scalar_one())
            tally.add("executions", len(chunk))


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class _PruneLock:
    """PostgreSQL: a session advisory lock on a connection of its own, tried, not waited
    for (another process prunes already); SQLite: one prune at a time in this process."""

    _sqlite_busy: ClassVar[set[str]] = set()

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: AsyncConnection | None = None

    async def acquire(self) -> bool:
        if self._database.is_sqlite:
            name = str(self._database.url)
            if name in self._sqlite_busy:
                return False
            self._sqlite_busy.add(name)
            return True
        self._connection = await self._database.engine.connect()
        taken = await self._connection.scalar(
            text(f"SELECT pg_try_advisory_lock({_LOCK_KEY})"), {"name": _LOCK_NAME}
        )
        await self._connection.commit()
        if not taken:
            await self._connection.close()
            self._connection = None
        return bool(taken)

    async def release(self) -> None:
        if self._database.is_sqlite:
            self._sqlite_busy.discard(str(self._database.url))
            return
        if self._connection is not None:
            try:
                await self._connection.execute(
                    text(f"SELECT pg_advisory_unlock({_LOCK_KEY})"), {"name": _LOCK_NAME}
                )
                await self._connection.commit()
            except BaseException:
                # Not unlocked (failed, or cancelled meanwhile): the pool must not hand the
                # session on with the lock held. Ending the session ends its locks.
                await self._connection.invalidate()
                raise
            finally:
                await self._connection.close()
                self._connection = None


async def prune(
    database: Database,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    only_discarded: bool = False,
) -> PruneRecord | None:
    """Delete the ended executions `policy` and their workflows' settings say are old, in
    batches; None when another process is pruning. A dry run deletes nothing and says what
    it would delete. Recorded (`last_prune`) and told to `PRUNED_LISTENERS` unless a dry run.
    `only_discarded`: only the executions that kept none of their data, past their grace
    period (the frequent prune); recorded only if it deleted some.
    """
    lock = _PruneLock(database)
    if not await lock.acquire():
        return None
    try:
        started_at = utcnow()
        tally = _Tally()
        if only_discarded:
            conditions = [_discarded(policy, now or started_at)]
        else:
            conditions = await _conditions(database, policy, now or started_at)
        sqlite_file = _sqlite_file(database)
        prunable = _prunable()
        if dry_run:
            found: set[str] = set()
            async with database.engine.connect() as connection:
                for condition in conditions:
                    query = select(_EXECUTIONS.c.id).where(prunable, condition)
                    found.update((await connection.execute(query)).scalars())
            await _count_rows(database, sorted(found), tally)
            if not only_discarded and policy.audit_max_age_hours is not None:
                before = (now or started_at) - timedelta(hours=policy.audit_max_age_hours)
                if audited := await _count_audit(database, before):
                    tally.rows[_AUDIT.name] = audited
            return PruneRecord(started_at, utcnow(), len(found), tally.rows)
        for condition in conditions:
            query = (
                select(_EXECUTIONS.c.id, _EXECUTIONS.c.created_at)
                .where(prunable, condition)
                .order_by(_EXECUTIONS.c.created_at, _EXECUTIONS.c.id)
                .limit(policy.batch_size)
            )
            if not database.is_sqlite:
                query = query.with_for_update(skip_locked=True, of=_EXECUTIONS)
            # Each batch goes on after the last one (by creation time, then id): what a
            # batch left (needed again since it was selected) is not walked again.
            after = query
            while True:
                if sqlite_file is not None:
                    async with database.session() as session:
                        rows = (await run_core(session, after)).all()
                    ids = [row[0] for row in rows]
                    if ids:
                        deleted = await asyncio.to_thread(_delete_in_file, sqlite_file, ids)
                        for table, count in deleted.items():
                            tally.add(table, count)
                else:
                    async with database.transaction() as session:
                        rows = (await run_core(session, after)).all()
                        ids = [row[0] for row in rows]
                        if ids:
                            await _delete_batch(session, ids, tally)
                if len(ids) < policy.batch_size:
                    break
                last_id, last_at = rows[-1]
                after = query.where(
                    or_(
                        _EXECUTIONS.c.created_at > last_at,
                        and_(_EXECUTIONS.c.created_at == last_at, _EXECUTIONS.c.id > last_id),
                    )
                )
                await asyncio.sleep(policy.pause_s)
        if not only_discarded:
            await _prune_ticks(database, (now or started_at) - _KEEP_TICKS)
            if policy.audit_max_age_hours is not None:
                before = (now or started_at) - timedelta(hours=policy.audit_max_age_hours)
                if audited := await _prune_audit(database, before, policy):
                    tally.rows[_AUDIT.name] = audited
        record = PruneRecord(started_at, utcnow(), tally.rows["executions"], tally.rows)
        if only_discarded and not record.executions_deleted:
            return record
        await _record(database, record)
        if record.executions_deleted and database.is_sqlite:
            await vacuum(database)
        on_pruned(dict(record.rows_deleted))
        return record
    finally:
        await lock.release()


async def _prune_ticks(database: Database, before: datetime) -> None:
    """Schedule ticks (one row per tick fired, storage/schedules.py) are a key that makes a
    tick fire once while processes race for it: older ones are never looked at again."""
    async with database.transaction() as session:
        result = await run_core(session, delete(_TICKS).where(_TICKS.c.scheduled_at < before))
    if result.rowcount:
        logger.info("pruned %d schedule ticks", result.rowcount)


async def _count_audit(database: Database, before: datetime) -> int:
    """How many audit log records `_prune_audit` would delete (a dry run)."""
    query = select(func.count()).select_from(_AUDIT).where(_AUDIT.c.occurred_at < before)
    async with database.engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def _prune_audit(database: Database, before: datetime, policy: RetentionPolicy) -> int:
    """Delete audit log records older than `before`, oldest first, `_AUDIT_BATCH` a
    transaction; how many."""
    deleted = 0
    while True:
        async with database.transaction() as session:
            oldest = (
                select(_AUDIT.c.id)
                .where(_AUDIT.c.occurred_at < before)
                .order_by(_AUDIT.c.occurred_at, _AUDIT.c.id)
                .limit(_AUDIT_BATCH)
            )
            ids = list((await run_core(session, oldest)).scalars())
            if ids:
                await run_core(session, delete(_AUDIT).where(_AUDIT.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < _AUDIT_BATCH:
            break
        await asyncio.sleep(policy.pause_s)
    if deleted:
        logger.info("pruned %d audit log records", deleted)
    return deleted


async def _record(database: Database, record: PruneRecord) -> None:
    async with database.transaction() as session:
        await run_core(
            session,
            insert(_PRUNE_RUNS).values(
                started_at=record.started_at,
                finished_at=record.finished_at,
                executions_deleted=record.executions_deleted,
                rows_deleted=record.rows_deleted,
            ),
        )
        kept = (
            select(_PRUNE_RUNS.c.id)
            .order_by(_PRUNE_RUNS.c.id.desc())
            .limit(_KEEP_PRUNE_RECORDS)
            .subquery()
        )
        await run_core(
            session, delete(_PRUNE_RUNS).where(_PRUNE_RUNS.c.id.not_in(select(kept.c.id)))
        )


async def last_prune(session: AsyncSession) -> PruneRecord | None:
    """The latest prune recorded, or None if there was none."""
    query = select(
        _PRUNE_RUNS.c.started_at,
        _PRUNE_RUNS.c.finished_at,
        _PRUNE_RUNS.c.executions_deleted,
        _PRUNE_RUNS.c.rows_deleted,
    ).order_by(_PRUNE_RUNS.c.id.desc())
    row = (await run_core(session, query.limit(1))).first()
    if row is None:
        return None
    return PruneRecord(row[0], row[1], row[2], {str(k): int(v) for k, v in row[3].items()})


async def ensure_incremental_vacuum(database: Database) -> bool:
    """Switch a SQLite file to incremental auto-vacuum if it is not (new files are, see
    storage/db.py): that takes a VACUUM, which rewrites the whole file once. True if it
    did."""
    if not database.is_sqlite:
        return False
    async with database.engine.connect() as connection:
        mode = (await connection.exec_driver_sql("PRAGMA auto_vacuum")).scalar_one()
        await connection.commit()
        if mode == 2:  # INCREMENTAL
            return False
        # VACUUM cannot run inside a transaction.
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
        await autocommit.exec_driver_sql("VACUUM")
    return True


async def vacuum(database: Database) -> int:
    """SQLite: give the pages that pruning freed back to the file system, a few at a time
    (a no-op unless the file uses incremental auto-vacuum). Returns the pages freed."""
    path = _sqlite_file(database)
    return 0 if path is None else await asyncio.to_thread(_vacuum_file, path)


def _vacuum_file(path: str) -> int:
    # A connection of its own, on a thread: `executescript` steps the pragma to its end
    # (a plain `execute` frees one page), and each step is a short transaction of its own.
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    freed = 0
    try:
        if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # INCREMENTAL
            return 0
        while free := connection.execute("PRAGMA freelist_count").fetchone()[0]:
            step = min(free, _VACUUM_PAGES)
            connection.executescript(f"PRAGMA incremental_vacuum({step});")
            freed += step
    finally:
        connection.close()
    return freed
