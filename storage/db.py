"""Async engine, sessions, and the differences between SQLite and PostgreSQL.

Everything dialect-specific (connection set-up, advisory locks) lives in `Database`, so that
repository functions read the same on both databases.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import sqlite_inline
from storage.sqlite_inline import InlineConnection

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits, which orjson refuses; the standard library writes them.
        return json.dumps(value)


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Pages that pruning frees go back to the file system (storage/retention.py). Takes
    # effect in a new file, set before its first table; an existing one needs a VACUUM. Set
    # only then: on a file in use the pragma waits for the write lock a writer may hold.
    cursor.execute("PRAGMA page_count")
    if cursor.fetchone()[0] == 0:
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    # WAL lets readers proceed while the single writer commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    # SQLite ignores foreign keys unless asked, per connection.
    cursor.execute("PRAGMA foreign_keys=ON")
    # Wait for a competing writer instead of failing at once with "database is locked";
    # inline connections wait between tries instead, with the event loop running.
    inline = isinstance(getattr(dbapi_connection, "driver_connection", None), InlineConnection)
    busy_timeout_ms = 0 if inline else SQLITE_BUSY_TIMEOUT_MS
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    # With WAL, NORMAL is durable against application crashes and much faster than FULL.
    cursor.execute("PRAGMA synchronous=NORMAL")

    cursor.close()
    # SQLite's own lower() folds ASCII letters only, so case-insensitive filters would miss
    # "Ü" for "ü"; Python's folds all of Unicode, as PostgreSQL's does.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)


async def run_core(session: AsyncSession, statement: Any, params: Any = None) -> Any:
    """Execute a Core statement on the session's connection, inside its transaction.

    The ORM's execution path (`session.exec`) costs about as much as the statement itself for
    the small statements the engine runs for every execution; plain Core skips it.
    """
    connection = await session.connection()
    return await connection.execute(statement, params)


class Sessions(Protocol):
    """Where reads get their sessions: a `Database`, or something that rations its sessions
    (the subscriptions' reads, resolvers/live_reads.py)."""

    def session(self) -> AbstractAsyncContextManager[AsyncSession]: ...


class Database:
    """One database: its engine, its session factory and its dialect's quirks."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pg_search_path: str | None = None,
        pre_ping: bool = False,
        recycle_s: float = 300.0,
    ) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        # A SQLite file written inline: its checkpoints run on a thread, from the first write.
        self._sqlite_file: str | None = None
        self._checkpointer: sqlite_inline.Checkpointer | None = None
        self._echo = echo
        self._pg_search_path = pg_search_path
        self._pre_ping = pre_ping
        self._recycle_s = recycle_s
        engine_options: dict[str, Any] = {
            "echo": echo,
            # orjson for every JSON column: several times faster than the standard library
            # on large documents (execution inputs and outputs).
            "json_serializer": _json_dumps,
            "json_deserializer": orjson.loads,
            # A failed statement's error names its SQL, never its values: they are item data
            # and node parameters (API keys among them), and errors end up in logs.
            "hide_parameters": True,
        }
        if self.dialect == "sqlite":
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
                # SQLite calls inline rather than on aiosqlite's threads (see the module).
                # Inline connections cost no thread, and opening one (with its pragmas)
                # costs more than keeping it: the pool keeps as many as a busy process uses.
                engine_options.update(
                    async_creator=sqlite_inline.connector(database), pool_size=32, max_overflow=64
                )
                self._sqlite_file = database
        else:
            # No ping before each checkout by default: it is a round trip per transaction
            # (about 15% of the throughput of small executions). A connection that a database
            # restart broke fails the statement that meets it, and that failure invalidates
            # the whole pool, so only what was in flight fails; recycling bounds how long an
            # idle connection can go stale behind a proxy or firewall.
            engine_options.update(
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=pre_ping,
                pool_recycle=recycle_s,
            )
            if pg_search_path is not None:
                # Tests isolate each run in its own schema of the shared database.
                engine_options["connect_args"] = {
                    "server_settings": {"search_path": pg_search_path}
                }
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _configure_sqlite)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        # SQLite: the task whose transaction may write now, and the lock the others wait on
        # (see `transaction`), one per event loop.
        self._writer: asyncio.Task[Any] | None = None
        self._write_lock = asyncio.Lock()
        self._write_lock_loop: asyncio.AbstractEventLoop | None = None

    def clone(self) -> Database:
        """Another `Database` on the same database, for another thread's event loop."""
        url = self.url.render_as_string(hide_password=False)
        return Database(
            url,
            echo=self._echo,
            pg_search_path=self._pg_search_path,
            pre_ping=self._pre_ping,
            recycle_s=self._recycle_s,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def session(self) -> AsyncSession:
        """A new session; use it as an async context manager."""
        return self.sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction that commits on success and rolls back on error.

        On SQLite, transactions of this process take turns through an asyncio lock: SQLite
        has one writer, and writers that meet in the database wait in its busy handler,
        which sleeps in steps of up to 100 ms (under webhook load the p99 latency was 2.2 s
        with it, 0.55 s with the lock). A task already holding the lock (a nested
        transaction) goes on.
        """
        if self._sqlite_file is not None and self._checkpointer is None:
            self._checkpointer = sqlite_inline.Checkpointer(self._sqlite_file)
        async with self.write_turn(), self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """SQLite: this process's turn to write, in order with its transactions (see
        `transaction`), also for a write made on a connection of its own (the pruner's, on
        a thread): the others wait their turn on the lock, not in SQLite's lock. At once
        on PostgreSQL, and for a task that has the turn already (a nested transaction)."""
        task = asyncio.current_task()
        if self.dialect != "sqlite" or (task is not None and task is self._writer):
            yield
            return
        loop = asyncio.get_running_loop()
        if self._write_lock_loop is not loop:  # a Database may outlive an event loop
            self._write_lock, self._write_lock_loop = asyncio.Lock(), loop
        async with self._write_lock:
            self._writer = task
            try:
                yield
            finally:
                self._writer = None

    async def lock(self, session: AsyncSession, name: str) -> None:
        """Take a database-wide lock named `name` until the session's transaction ends.

        PostgreSQL uses a transaction-level advisory lock. SQLite has a single writer: an
        immediate write to a scratch table takes its write lock at once, so concurrent callers
        queue behind it (the busy timeout makes them wait rather than fail).
        """
        if self.is_sqlite:
            await session.exec(
                text("UPDATE lock_anchor SET touched = touched + 1 WHERE id = 1")  # type: ignore[call-overload]
            )
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        await session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=key))  # type: ignore[call-overload]

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        await self.engine.dispose()
