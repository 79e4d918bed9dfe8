"""Database reads of subscriptions: bounded, shared, and retried.

Subscriptions read when they start, when they catch up, and when something changed, and
many of them read the same thing at the same moment: every subscriber of an execution is
woken by its claim, and two hundred watchers of one run catch up together. Unbounded, those
reads held every pooled connection and `executeWorkflow` failed with a pool timeout. So:

- at most `max_connections` subscription reads run at once in a process; the rest of the
  pool stays free for queries and mutations;
- a read with the same key as one under way waits for that one instead of running again;
- a read that fails because the database is unavailable (a connection lost or refused, no
  pooled connection in time) is tried again with backoff for up to `retry_s`; past that,
  `LiveUnavailableError`, which ends the subscription with the typed UNAVAILABLE error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import Database
from storage.errors import is_unavailable

logger = logging.getLogger("loom.subscriptions")

T = TypeVar("T")

FIRST_RETRY_S = 0.1
MAX_RETRY_DELAY_S = 5.0


class LiveUnavailableError(Exception):
    """The database stayed unavailable for longer than subscriptions wait for it."""


class LiveReads:
    """The reads of one process's subscriptions (see the module docstring)."""

    def __init__(
        self, database: Database, *, max_connections: int = 4, retry_s: float = 60.0
    ) -> None:
        self.database = database
        self.max_connections = max_connections
        self.retry_s = retry_s
        self._slots = asyncio.Semaphore(max_connections)
        self._under_way: dict[Hashable, asyncio.Task[Any]] = {}
        # Reads run, and reads answered by another one under way (for tests and benchmarks).
        self.reads = 0
        self.joined = 0

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session within the budget of connections (DataLoaders of websocket
        connections use it too)."""
        async with self._slots, self.database.session() as session:
            yield session

    async def read(self, key: Hashable, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`read` in a session of the budget, or the result of the same read (same `key`)
        under way; retried while the database is unavailable."""
        task = self._under_way.get(key)
        if task is None:
            task = asyncio.create_task(self.retrying(lambda: self._in_session(read)))
            self._under_way[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        else:
            self.joined += 1
        # Shielded: one subscriber leaving does not cancel the read the others wait for.
        result: T = await asyncio.shield(task)
        return result

    async def _in_session(self, read: Callable[[AsyncSession], Awaitable[T]]) -> T:
        self.reads += 1
        async with self.session() as session:
            return await read(session)

    def _finished(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._under_way.get(key) is task:
            del self._under_way[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, tried again with backoff while the database is unavailable, for up to
        `retry_s`; then `LiveUnavailableError`."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.retry_s
        delay_s = FIRST_RETRY_S
        while True:
            try:
                return await call()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                if loop.time() + delay_s > give_up_at:
                    raise LiveUnavailableError(
                        f"the database has been unavailable for {self.retry_s:.0f} s"
                    ) from exc
                logger.warning(
                    "subscription read failed, the database is unavailable (%s: %s); "
                    "retrying in %.1f s",
                    type(exc).__name__,
                    str(exc).split("\n", 1)[0],
                    delay_s,
                )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_RETRY_DELAY_S)
