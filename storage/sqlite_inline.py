"""SQLite calls made inline, on the event loop's thread, behind aiosqlite's interface.

aiosqlite runs every call on a thread of its own and hands the result back through the event
loop. For the statements Loom runs (small, by primary key or index, each well under 100 µs
in SQLite) that hand-off costs more than the statement, and it makes a transaction as long as
the event loop is busy: a write transaction of five statements waited for five turns of a
loop serving many requests while it held SQLite's only write lock, and the writers queued
behind it (webhook throughput, docs/benchmarks.md). Made inline, a statement costs its own
time and a transaction holds the lock only while it works.

SQLAlchemy's aiosqlite dialect takes this connection through its documented `async_creator`
hook (`Database` passes it for SQLite URLs); it sees the same methods it calls on aiosqlite's
connection and cursor. Every coroutine here completes without suspending.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# A statement that meets another connection's write lock (another process, or a writer of
# this one outside `Database.transaction`) is tried again after a pause in which the event
# loop runs: SQLite's own busy handler would sleep inside the call and stop the whole loop,
# including the writer it waits for. Connections are opened with a busy timeout of 0.
BUSY_TIMEOUT_S = 10.0
_FIRST_PAUSE_S = 0.001
_LONGEST_PAUSE_S = 0.02


async def _patiently(call: Callable[..., Any], *args: Any) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_TIMEOUT_S
    pause = _FIRST_PAUSE_S
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as exc:
            # Only plain SQLITE_BUSY: a stale snapshot (SQLITE_BUSY_SNAPSHOT) needs a new
            # transaction, not another try.
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
            if loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE_S)


class InlineCursor:
    """aiosqlite's cursor interface over a sqlite3 cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        if parameters is None:
            await _patiently(self._cursor.execute, sql)
        else:
            await _patiently(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        await _patiently(self._cursor.executemany, sql, list(parameters))
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Immediate:
    """Where SQLAlchemy queues a function for aiosqlite's thread (to set the isolation
    level): run it now and settle its future."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """aiosqlite's connection interface over a sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = connection
        self._tx = _Immediate(connection)

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._open().cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        self._open().commit()

    async def rollback(self) -> None:
        self._open().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# Checkpoints (copying the write-ahead log back into the database file, with an fsync) run on
# a thread of their own, since a connection on the event loop's thread runs them inside the
# commit that crosses SQLite's threshold (1,000 pages): under load they were 60% of the time
# commits took, during which the event loop stood still. That threshold stays: a checkpoint
# from another connection runs while writers append, so under steady writes it never catches
# up with the end of the log, and only a checkpoint inside a commit lets the next writer
# start the log again from its beginning (else it grows, and every read gets slower). With
# this thread ahead of it, that checkpoint finds little or nothing left to copy.
CHECKPOINT_INTERVAL_S = 0.1


class Checkpointer:
    """Checkpoints a SQLite file's write-ahead log every `interval_s`, on its own thread
    and connection (PASSIVE: it never waits for, or blocks, readers and writers)."""

    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="loom-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, check_same_thread=False)
        try:
            while not self._stop.wait(self.interval_s):
                # The file went away, or is busy: the next turn tries again.
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def connector(path: str) -> Callable[[], Any]:
    """The `async_creator` for a SQLite file: connections made as aiosqlite would make them
    (`check_same_thread=False`, as SQLAlchemy asks), used inline."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(path, check_same_thread=False)
        return InlineConnection(connection)

    return connect
