"""Keeping leases alive from a thread of their own.

A worker holds a lease on every execution it runs and renews it well before it expires. The
renewal runs in a separate thread, with its own event loop and database connections, so that
a node that keeps the main event loop busy (a long CPU-bound transform) cannot make the
process lose its leases: the interpreter switches threads every few milliseconds whatever
the main thread is doing.

Each round also reads back the generation and the cancel flag of every held execution: a
lease another process took over (this one was paused or cut off for longer than the lease)
is reported as lost, and a cancel requested through the database is reported too, so that
cancellation works even when the Redis notification was missed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select, update

from storage.db import Database
from storage.models import Execution
from storage.types import utcnow

logger = logging.getLogger("loom.leases")


@dataclass(slots=True)
class _Held:
    generation: int
    on_lost: Callable[[], object]
    on_cancel: Callable[[], object]
    cancel_reported: bool = False


class LeaseKeeper:
    """Renews the leases of the executions this process runs, every `interval_s`."""

    def __init__(
        self,
        database: Database,
        owner: str,
        lease_s: float,
        interval_s: float | None = None,
    ) -> None:
        self._database = database
        self.owner = owner
        self.lease_s = lease_s
        self.interval_s = interval_s if interval_s is not None else max(lease_s / 3, 0.05)
        self._held: dict[str, _Held] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._main_loop: asyncio.AbstractEventLoop | None = None
        self.rounds = 0

    def start(self) -> None:
        """Start the thread; callbacks run on the calling thread's event loop."""
        self._main_loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._thread_main, name="loom-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def hold(
        self,
        execution_id: str,
        generation: int,
        on_lost: Callable[[], object],
        on_cancel: Callable[[], object],
    ) -> None:
        with self._guard:
            self._held[execution_id] = _Held(generation, on_lost, on_cancel)

    def drop(self, execution_id: str) -> None:
        with self._guard:
            self._held.pop(execution_id, None)

    def held(self) -> list[str]:
        with self._guard:
            return list(self._held)

    def _thread_main(self) -> None:
        asyncio.run(self._renew_forever())

    async def _renew_forever(self) -> None:
        database = self._database.clone()
        try:
            while not self._stop.is_set():
                try:
                    await self.renew(database)
                except Exception:
                    logger.exception("renewing leases failed; trying again")
                self.rounds += 1
                await asyncio.to_thread(self._stop.wait, self.interval_s)
        finally:
            await database.dispose()

    async def renew(self, database: Database) -> None:
        with self._guard:
            held = dict(self._held)
        if not held:
            return
        now = utcnow()
        async with database.transaction() as session:
            # Lock the rows in id order first, as the writer's fence does: no deadlock.
            rows = (
                await session.exec(
                    select(
                        Execution.id,
                        Execution.lease_generation,
                        Execution.lease_owner,
                        Execution.cancel_requested_at,
                    )
                    .where(col(Execution.id).in_(held))
                    .order_by(col(Execution.id))
                    .with_for_update()
                )
            ).all()
            await session.exec(
                update(Execution)
                .where(col(Execution.id).in_(held), col(Execution.lease_owner) == self.owner)
                .values(lease_expires_at=now + timedelta(seconds=self.lease_s))
            )
        found = {row[0]: row for row in rows}
        for execution_id, entry in held.items():
            row = found.get(execution_id)
            if row is not None and row[1] == entry.generation and row[2] is None:
                # The run committed its end (or a durable wait) and released the lease
                # itself; it is about to let go of it here too.
                continue
            if row is None or row[1] != entry.generation or row[2] != self.owner:
                logger.warning("execution %s: lease lost to another process", execution_id)
                self.drop(execution_id)
                self._call(entry.on_lost)
            elif row[3] is not None and not entry.cancel_reported:
                entry.cancel_reported = True
                self._call(entry.on_cancel)

    def _call(self, callback: Callable[[], object]) -> None:
        if self._main_loop is not None and not self._main_loop.is_closed():
            self._main_loop.call_soon_threadsafe(callback)
