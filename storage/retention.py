"""Pruning ended executions: how long they stay, by age and by count.

Server-wide bounds (`RetentionPolicy`, from `LOOM_EXECUTIONS_*`) and per-workflow ones (its
settings, engine/retention.py) each name a maximum age, a maximum count and, optionally, a
maximum age for failed (and cancelled) executions, which are then pruned by that age only:
a workflow with retention settings of its own has its own bounds (the server's age bounds
where it names none; its own count or none); the server's count bounds the executions of
all the other workflows together. An execution is pruned with its node runs, payloads and
events, in batches of `batch_size` executions, one transaction each on PostgreSQL, and on
SQLite `_DELETE_CHUNK` executions per transaction on the prune's own thread and connection
(`_SqliteFile`), so that writers never wait long; never one still queued, running or
waiting, nor one that an unfinished execution needs (the execution a retry or a run to a
node reuses, a sub-workflow execution whose caller waits for it).

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
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Delete,
    Select,
    Table,
    and_,
    bindparam,
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
    WebhookIdempotencyKey,
    Workflow,
)
from storage.types import utcnow

logger = logging.getLogger("loom.retention")

_EXECUTIONS: Table = Execution.__table__  # type: ignore[attr-defined]
_WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
_PRUNE_RUNS: Table = PruneRun.__table__  # type: ignore[attr-defined]
_TICKS: Table = ScheduleTick.__table__  # type: ignore[attr-defined]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[attr-defined]
_KEYS: Table = WebhookIdempotencyKey.__table__  # type: ignore[attr-defined]
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
_VACUUM_PAGES = 500
# Executions deleted per SQLite transaction: the writers of the process wait for one.
_DELETE_CHUNK = 10
# Ids per statement when counting what a dry run would delete.
_CHUNK = 500

_T = TypeVar("_T")
# Reads rows for the prune: SQLite's on the prune's thread (`_SqliteFile`), PostgreSQL's on
# a pooled connection.
_Read = Callable[[Select[Any]], Awaitable[list[tuple[Any, ...]]]]

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
    # Webhook idempotency keys are deleted this long after their first use (every full
    # prune; storage/idempotency.py).
    idempotency_key_ttl_hours: float = 24.0

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
            idempotency_key_ttl_hours=self.idempotency_key_ttl_hours,
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


async def _nth_newest(read: _Read, scope: ColumnElement[bool], count: int) -> Any:
    """The creation time of the `count`th newest execution in `scope` (as the reader
    returns it), or None: older ones are beyond the count."""
    query = (
        select(_EXECUTIONS.c.created_at)
        .where(scope)
        .order_by(_EXECUTIONS.c.created_at.desc())
        .offset(count - 1)
        .limit(1)
    )
    rows = await read(query)
    return rows[0][0] if rows else None


def _discarded(policy: RetentionPolicy, now: datetime) -> ColumnElement[bool]:
    """Executions that kept none of their data, ended longer than the grace period ago (a
    cheap query: a partial index holds only them)."""
    table = _EXECUTIONS
    return and_(
        table.c.saved_data == SaveData.NONE.value,
        table.c.finished_at < now - timedelta(seconds=policy.none_after_s),
    )


async def _conditions(
    read: _Read, policy: RetentionPolicy, now: datetime
) -> list[ColumnElement[bool]]:
    """What makes an execution old enough to prune, rule by rule (each pruned in turn)."""
    table = _EXECUTIONS
    rows = await read(select(_WORKFLOWS.c.id, _WORKFLOWS.c.settings))
    overrides: dict[str, RetentionPolicy | None] = {}
    for workflow_id, settings in rows:
        if isinstance(settings, str):  # SQLite's own connection: the stored text
            settings = json.loads(settings)
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
            newest = await _nth_newest(read, counted, rule.max_count)
            if newest is not None:
                conditions.append(_all(counted, table.c.created_at < newest))
    return conditions


def _all(*conditions: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return and_(*(condition for condition in conditions if condition is not None))


def _recheck(ids: list[str] | BindParameter[Any]) -> Select[Any]:
    """The ids of a batch still prunable, in the write that deletes them: a retry or run to
    a node that names one may have been created since the batch was selected."""
    return select(_EXECUTIONS.c.id).where(_EXECUTIONS.c.id.in_(ids), _prunable())


def _deletes(ids: list[str] | BindParameter[Any]) -> Iterator[tuple[str, Delete]]:
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


class _SqliteFile:
    """SQLite: the prune's own connection, on a thread of its own, where it selects each
    batch and deletes it. The process's connections run on the event loop
    (storage/sqlite_inline.py): a batch's selection or deletes there would stall every
    request meanwhile; here the loop runs. Each delete transaction is short (`_DELETE_CHUNK`
    executions, checked again in it) and takes this process's turn to write
    (`Database.write_turn`): the group-commit writer waits for at most one, in line, rather
    than polling SQLite's lock in pauses of up to 20 ms, and goes before the next."""

    def __init__(self, database: Database, path: str) -> None:
        self._database = database
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="loom-prune")
        self._connection: sqlite3.Connection | None = None

    async def _call(self, call: Callable[..., _T], *args: Any) -> _T:
        """`call` on the thread; a cancel (a stop) waits for it to end, so that the turn to
        write it holds is not handed on while its transaction still runs."""
        running = asyncio.get_running_loop().run_in_executor(self._thread, call, *args)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            await asyncio.wait({running})
            raise

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self._path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            # Deleting an execution sets what names it to NULL (retry_of, schedule ticks...).
            connection.execute("PRAGMA foreign_keys=ON")
            # As the process's own connections (storage/db.py): with WAL, NORMAL is durable
            # against crashes of the application, and a commit does not wait for a sync of
            # the log while it holds the process's turn to write.
            connection.execute("PRAGMA synchronous=NORMAL")
            self._connection = connection
        return self._connection

    async def read(self, statement: Select[Any]) -> list[tuple[Any, ...]]:
        """The rows of `statement`, as stored (times as SQLite's text)."""
        return await self._call(lambda: _run_sqlite(self._open(), statement).fetchall())

    async def delete(self, ids: list[str], tally: _Tally) -> None:
        for start in range(0, len(ids), _DELETE_CHUNK):
            async with self._database.write_turn():
                deleted = await self._call(self._delete, ids[start : start + _DELETE_CHUNK])
            for table, count in deleted.items():
                tally.add(table, count)

    def _delete(self, ids: list[str]) -> dict[str, int]:
        connection = self._open()
        deleted: dict[str, int] = {}
        connection.execute("BEGIN IMMEDIATE")
        try:
            recheck, _ = _chunk_statements(len(ids))
            kept = [row[0] for row in recheck.run(connection, ids)]
            for table, statement in _chunk_statements(len(kept))[1] if kept else ():
                deleted[table] = statement.run(connection, kept).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return deleted

    async def write(self, statement: Delete) -> int:
        """Run `statement` in a transaction of its own, in this process's turn; its rows."""
        async with self._database.write_turn():
            return await self._call(self._write, statement)

    def _write(self, statement: Delete) -> int:
        connection = self._open()
        connection.execute("BEGIN IMMEDIATE")
        try:
            count = _run_sqlite(connection, statement).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return int(count)

    async def vacuum(self) -> int:
        """Give the pages that pruning freed back to the file system, `_VACUUM_PAGES` at a
        time, each step a write of its own in this process's turn. Returns pages freed."""
        freed = 0
        while True:
            async with self._database.write_turn():
                step = await self._call(self._vacuum_step)
            if not step:
                return freed
            freed += step

    def _vacuum_step(self) -> int:
        connection = self._open()
        if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # INCREMENTAL
            return 0
        step = min(connection.execute("PRAGMA freelist_count").fetchone()[0], _VACUUM_PAGES)
        if step:
            # `executescript` steps the pragma to its end (a plain `execute` frees one page).
            connection.executescript(f"PRAGMA incremental_vacuum({step});")
        return int(step)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()

        await self._call(close)
        self._thread.shutdown(wait=False)


_SQLITE_TIME = sqlite_dialect.DATETIME().bind_processor(_SQLITE)  # type: ignore[no-untyped-call]


def _run_sqlite(connection: sqlite3.Connection, statement: Delete | Select[Any]) -> sqlite3.Cursor:
    compiled = statement.compile(dialect=_SQLITE, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    values = [_sqlite_value(params[name]) for name in compiled.positiontup or ()]
    return connection.execute(str(compiled), values)


@dataclass(frozen=True, slots=True)
class _CompiledSql:
    """A statement compiled for SQLite once, run with the ids of each chunk: compiling the
    recheck and the deletes took about 5 ms of CPU per chunk, holding the interpreter's lock
    that the event loop's thread needs."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]

    def run(self, connection: sqlite3.Connection, ids: list[str]) -> sqlite3.Cursor:
        values = [
            ids[int(name.removeprefix(_IDS_PREFIX)) - 1]
            if name.startswith(_IDS_PREFIX)
            else self.fixed[name]
            for name in self.names
        ]
        return connection.execute(self.sql, values)


_IDS_PREFIX = "prune_ids_"


@lru_cache(maxsize=8)
def _chunk_statements(count: int) -> tuple[_CompiledSql, list[tuple[str, _CompiledSql]]]:
    """The recheck and the deletes (by table) of `count` ids, compiled for SQLite."""
    ids: BindParameter[Any] = bindparam(_IDS_PREFIX.rstrip("_"), value=[""] * count, expanding=True)

    def compiled(statement: Delete | Select[Any]) -> _CompiledSql:
        done = statement.compile(dialect=_SQLITE, compile_kwargs={"render_postcompile": True})
        names = tuple(done.positiontup or ())
        fixed = {
            name: _sqlite_value(done.params[name])
            for name in names
            if not name.startswith(_IDS_PREFIX)
        }
        return _CompiledSql(str(done), names, fixed)

    return compiled(_recheck(ids)), [
        (table, compiled(statement)) for table, statement in _deletes(ids)
    ]


def _sqlite_value(value: Any) -> Any:
    """A parameter as SQLAlchemy stores it in SQLite (times: UTC text, storage/types.py)."""
    if isinstance(value, datetime):
        assert _SQLITE_TIME is not None and value.tzinfo is not None
        return _SQLITE_TIME(value.astimezone(UTC))
    return value


async def _read_pg(database: Database, statement: Select[Any]) -> list[tuple[Any, ...]]:
    async with database.engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(statement)).all()]


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
    sqlite_path = _sqlite_file(database)
    file = None if sqlite_path is None else _SqliteFile(database, sqlite_path)
    read: _Read = partial(_read_pg, database) if file is None else file.read
    try:
        started_at = utcnow()
        tally = _Tally()
        if only_discarded:
            conditions = [_discarded(policy, now or started_at)]
        else:
            conditions = await _conditions(read, policy, now or started_at)
        prunable = _prunable()
        if dry_run:
            found: set[str] = set()
            for condition in conditions:
                rows = await read(select(_EXECUTIONS.c.id).where(prunable, condition))
                found.update(row[0] for row in rows)
            await _count_rows(database, sorted(found), tally)
            if not only_discarded and policy.audit_max_age_hours is not None:
                before = (now or started_at) - timedelta(hours=policy.audit_max_age_hours)
                if audited := await _count_audit(database, before):
                    tally.rows[_AUDIT.name] = audited
            if not only_discarded:
                before = (now or started_at) - timedelta(hours=policy.idempotency_key_ttl_hours)
                if expired := await _count_keys(read, before):
                    tally.rows[_KEYS.name] = expired
            return PruneRecord(started_at, utcnow(), len(found), tally.rows)
        for condition in conditions:
            query = (
                select(_EXECUTIONS.c.id, _EXECUTIONS.c.created_at)
                .where(prunable, condition)
                .order_by(_EXECUTIONS.c.created_at, _EXECUTIONS.c.id)
                .limit(policy.batch_size)
            )
            if file is None:
                query = query.with_for_update(skip_locked=True, of=_EXECUTIONS)
            # Each batch goes on after the last one (by creation time, then id): what a
            # batch left (needed again since it was selected) is not walked again.
            after = query
            while True:
                if file is not None:
                    rows = await file.read(after)
                    ids = [row[0] for row in rows]
                    if ids:
                        await file.delete(ids, tally)
                else:
                    async with database.transaction() as session:
                        rows = list((await run_core(session, after)).all())
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
            before = (now or started_at) - timedelta(hours=policy.idempotency_key_ttl_hours)
            if expired := await _prune_keys(database, file, before, policy):
                tally.rows[_KEYS.name] = expired
        record = PruneRecord(started_at, utcnow(), tally.rows["executions"], tally.rows)
        if only_discarded and not record.executions_deleted:
            return record
        await _record(database, record)
        if record.executions_deleted and file is not None:
            await file.vacuum()
        on_pruned(dict(record.rows_deleted))
        return record
    finally:
        try:
            if file is not None:
                await file.close()
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


async def _count_keys(read: _Read, before: datetime) -> int:
    """How many webhook idempotency keys `_prune_keys` would delete (a dry run)."""
    rows = await read(select(func.count()).select_from(_KEYS).where(_KEYS.c.created_at < before))
    return int(rows[0][0])


async def _prune_keys(
    database: Database, file: _SqliteFile | None, before: datetime, policy: RetentionPolicy
) -> int:
    """Delete the webhook idempotency keys first used before `before` (expired,
    storage/idempotency.py), oldest first, `batch_size` a transaction, each batch after the
    last one; SQLite's on the prune's thread like the executions'. How many."""
    query = (
        select(_KEYS.c.created_at, _KEYS.c.workflow_id, _KEYS.c.key)
        .where(_KEYS.c.created_at < before)
        .order_by(_KEYS.c.created_at, _KEYS.c.workflow_id, _KEYS.c.key)
        .limit(policy.batch_size)
    )
    after = query
    deleted = 0
    while True:
        if file is not None:
            rows = await file.read(after)
            for chunk in _key_chunks(rows):
                deleted += await file.write(_delete_keys(chunk, before))
        else:
            async with database.transaction() as session:
                locked = after.with_for_update(skip_locked=True)
                rows = list((await run_core(session, locked)).all())
                for chunk in _key_chunks(rows):
                    deleted += (await run_core(session, _delete_keys(chunk, before))).rowcount
        if len(rows) < policy.batch_size:
            break
        last_at, last_workflow, last_key = rows[-1]
        after = query.where(
            or_(
                _KEYS.c.created_at > last_at,
                and_(
                    _KEYS.c.created_at == last_at,
                    or_(
                        _KEYS.c.workflow_id > last_workflow,
                        and_(_KEYS.c.workflow_id == last_workflow, _KEYS.c.key > last_key),
                    ),
                ),
            )
        )
        await asyncio.sleep(policy.pause_s)
    if deleted:
        logger.info("pruned %d webhook idempotency keys", deleted)
    return deleted


def _key_chunks(rows: list[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(rows), _CHUNK // 2):
        yield rows[start : start + _CHUNK // 2]


def _delete_keys(rows: list[tuple[Any, ...]], before: datetime) -> Delete:
    """Delete these keys, if still expired (a key used again since is kept)."""
    return delete(_KEYS).where(
        _KEYS.c.created_at < before,
        or_(*(and_(_KEYS.c.workflow_id == row[1], _KEYS.c.key == row[2]) for row in rows)),
    )


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
    if path is None:
        return 0
    file = _SqliteFile(database, path)
    try:
        return await file.vacuum()
    finally:
        await file.close()
