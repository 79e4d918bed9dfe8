"""`executionUpdates` for a whole process: one reader of status changes, shared by every
subscriber, so that a subscriber costs about one websocket write per round and nothing more.

```
EventFanout --ids whose status may have changed--> UpdatesFeed (one task per process)
  one read per round, whatever the number of subscribers --> one SharedExecution per row
  --> each Watcher keeps those of its workspaces (and workflow) not yet sent at that status
  --> its subscription sends them; the selection's result and JSON are computed once for
      all subscribers with the same selection (schema/sharing.py)
```

A round reads what changed since the last one, at most one round per `round_s`, and not
before the watchers have sent the previous one (for `max_round_s` at most), so that changes
arriving together are read, and sent, together. With nothing for `idle_check_s`, it reads
again what the watchers show as unfinished (a lost message costs at most that delay). After
a loss (the bus lost messages, or a watcher's own backlog overflowed) it also reads the
unfinished executions of the watchers concerned, and those that ended since the watcher
was last caught up (an execution that began and ended in the gap, never shown, is shown
then). Reads go through `LiveReads`: bounded, and
retried while the database is unavailable; when it stays unavailable, every watcher ends
with UNAVAILABLE (a typed error the client answers by subscribing again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from engine import log_context
from engine.bus import EventFanout, UpdateStream
from resolvers import mapping
from resolvers.live_reads import LiveReads, LiveUnavailableError
from schema import execution_types as xtypes
from storage import executions
from storage.models import Execution
from storage.types import utcnow

_TERMINAL = frozenset(("SUCCEEDED", "FAILED", "CANCELLED"))
# Ids per `IN (...)` list.
_READ_CHUNK = 500
# Watchers woken at a time in a round.
WAKE_SLICE = 16
# After a loss, executions created this long before a watcher was last caught up are read
# too: one created just before then may have reached the watcher's backlog only after.
CAUGHT_UP_MARGIN = timedelta(seconds=10)


class UpdatesFailedError(Exception):
    """The reader met a fault; the watchers of that moment end (their cause is logged)."""


@dataclass(frozen=True, slots=True)
class Change:
    """An execution as read in one round, shared by the watchers that may see it."""

    workspace_id: str
    workflow_id: str
    execution_id: str
    status: str
    execution: xtypes.Execution

    @classmethod
    def of(cls, row: Execution) -> Change:
        return cls(
            row.workspace_id, row.workflow_id, row.id, row.status, mapping.shared_execution(row)
        )


class InHand:
    """How many watchers have changes they have not sent yet; `drained` is set when none."""

    def __init__(self) -> None:
        self.count = 0
        self.drained = asyncio.Event()
        self.drained.set()

    def add(self) -> None:
        self.count += 1
        self.drained.clear()

    def remove(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.drained.set()


class Watcher:
    """One `executionUpdates` subscriber: what it may see, what it was sent, what waits."""

    def __init__(
        self,
        workspace_ids: Iterable[str],
        workflow_id: str | None,
        *,
        remember: int,
        backlog: int,
        in_hand: InHand,
    ) -> None:
        self.workspace_ids = frozenset(workspace_ids)
        self.workflow_id = workflow_id
        self._remember = remember
        self._backlog = backlog
        # The last status sent, by execution id, the most recently sent last (the newest
        # `remember`; a plain dict: half the memory of an OrderedDict, times every watcher).
        self.sent: dict[str, str] = {}
        self._pending: dict[str, Change] = {}
        # Its backlog overflowed: the feed reads what it shows (and its unfinished) again.
        self.lost = False
        # When it last took everything it had been offered.
        self.caught_up_at = utcnow()
        self._failure: BaseException | None = None
        self._ready = asyncio.Event()
        # From changes offered until it asks for more with nothing left: its subscription
        # is sending them.
        self.busy = False
        self._in_hand = in_hand

    @property
    def scope(self) -> tuple[frozenset[str], str | None]:
        return self.workspace_ids, self.workflow_id

    def sees(self, change: Change) -> bool:
        return change.workspace_id in self.workspace_ids and (
            self.workflow_id is None or change.workflow_id == self.workflow_id
        )

    def offer(self, changes: Iterable[Change], *, resync: bool = False) -> None:
        """Changes it `sees` (the feed filters them once per scope). What a resync read is
        taken whole (its reads are bounded): letting it go would lose it again."""
        offered = False
        for change in changes:
            if self.sent.get(change.execution_id) == change.status:
                continue
            if (
                not resync
                and len(self._pending) >= self._backlog
                and change.execution_id not in self._pending
            ):
                self._pending.clear()
                self.lost = True
            self._pending[change.execution_id] = change
            offered = True
        if offered:
            self._ready.set()
            if not self.busy:
                self.busy = True
                self._in_hand.add()

    def done(self) -> None:
        """It has sent what it took (or its subscription ended)."""
        if self.busy:
            self.busy = False
            self._in_hand.remove()

    def fail(self, error: BaseException) -> None:
        self._failure = error
        self._ready.set()

    def unfinished(self) -> Iterator[str]:
        """Executions it shows as not finished."""
        return (i for i, status in self.sent.items() if status not in _TERMINAL)

    async def take(self, timeout_s: float) -> list[Change]:
        """What to send next, each execution at a status it was not sent; waits for it up
        to `timeout_s` (then nothing: the subscription checks its token meanwhile)."""
        while True:
            if not self._pending:
                self.done()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return []
            self._ready.clear()
            if isinstance(self._failure, LiveUnavailableError):
                raise LiveUnavailableError(str(self._failure))
            if self._failure is not None:
                raise UpdatesFailedError("reading execution updates failed") from self._failure
            pending, self._pending = self._pending, {}
            if not self.lost:
                self.caught_up_at = utcnow()
            taken = []
            for change in pending.values():
                if self.sent.get(change.execution_id) == change.status:
                    continue
                self.sent.pop(change.execution_id, None)
                self.sent[change.execution_id] = change.status
                taken.append(change)
            while len(self.sent) > self._remember:
                del self.sent[next(iter(self.sent))]
            if taken:
                return taken


class UpdatesFeed:
    """The process's one reader of status changes (see the module docstring)."""

    def __init__(
        self,
        fanout: EventFanout,
        reads: LiveReads,
        *,
        idle_check_s: float = 10.0,
        round_s: float = 0.1,
        max_round_s: float = 0.25,
        remember: int = 1000,
        backlog: int = 1000,
    ) -> None:
        self.fanout = fanout
        self.reads = reads
        self.idle_check_s = idle_check_s
        self.round_s = round_s
        self.max_round_s = max_round_s
        self.remember = remember
        self.backlog = backlog
        self.watchers: set[Watcher] = set()
        self.rounds = 0
        self._in_hand = InHand()
        self._task: asyncio.Task[None] | None = None

    def watch(self, workspace_ids: Iterable[str], workflow_id: str | None) -> Watcher:
        """A new watcher, counted as a subscription (`SubscriptionLimitError` past the limit)."""
        self.fanout.admit()
        watcher = Watcher(
            workspace_ids,
            workflow_id,
            remember=self.remember,
            backlog=self.backlog,
            in_hand=self._in_hand,
        )
        self.watchers.add(watcher)
        if self._task is None:
            self._task = log_context.start_task(self._run(), name="loom-execution-updates")
        return watcher

    async def stop_watching(self, watcher: Watcher) -> None:
        if watcher not in self.watchers:
            return
        self.watchers.discard(watcher)
        watcher.done()
        self.fanout.release()
        if not self.watchers and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        stream = self.fanout.open_updates()
        try:
            while True:
                try:
                    await self._round(stream)
                except Exception as exc:
                    # The database unavailable for longer than watchers wait, or a fault:
                    # the watchers end (with UNAVAILABLE, or a masked error logged with each
                    # one's request id); the reader goes on for those that subscribe again.
                    for watcher in self.watchers:
                        watcher.fail(exc)
        finally:
            self.fanout.close(stream)

    async def _round(self, stream: UpdateStream) -> None:
        # A watcher that fell behind is read for again at once.
        falling_behind = any(watcher.lost for watcher in self.watchers)
        changed, resync = await stream.take(0 if falling_behind else self.idle_check_s)
        started = asyncio.get_running_loop().time()
        watchers = list(self.watchers)
        lost = watchers if resync else [watcher for watcher in watchers if watcher.lost]
        check = set(changed)
        # Nothing came for a while, or something was lost: look again at what is shown.
        for watcher in watchers if not changed else lost:
            check.update(watcher.unfinished())
        if not check and not lost:
            return
        for watcher in lost:
            watcher.lost = False
        rows, resynced = await self.reads.retrying(lambda: self._read(check, lost))
        self.rounds += 1
        changes = [Change.of(row) for row in rows]
        # Watchers mostly share a few scopes (the same user, the same workflow): each
        # scope's changes are picked once.
        by_scope: dict[tuple[frozenset[str], str | None], list[Change]] = {}
        for index, watcher in enumerate(watchers, 1):
            seen = by_scope.get(watcher.scope)
            if seen is None:
                seen = by_scope[watcher.scope] = [c for c in changes if watcher.sees(c)]
            watcher.offer(seen)
            if index % WAKE_SLICE == 0:
                # The woken subscriptions send before the next ones are woken: requests
                # waiting for the event loop wait for a slice, not for the whole round.
                await asyncio.sleep(0)
        for scope, scope_rows in resynced.items():
            scope_changes = [Change.of(row) for row in scope_rows]
            for watcher in lost:
                if watcher.scope == scope:
                    watcher.offer(scope_changes, resync=True)
        # Changes that arrive while this round's are being sent are read together in the
        # next round: under load, rounds grow and each subscriber sends fewer, fuller
        # updates (an execution that went from QUEUED to SUCCEEDED meanwhile, once). A slow
        # client delays the others' next round by `max_round_s` at most.
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_round_s - (loop.time() - started)):
                await self._in_hand.drained.wait()
        rest_s = self.round_s - (loop.time() - started)
        if rest_s > 0:
            await asyncio.sleep(rest_s)

    async def _read(
        self, execution_ids: set[str], lost: Sequence[Watcher]
    ) -> tuple[list[Execution], dict[tuple[frozenset[str], str | None], Sequence[Execution]]]:
        async with self.reads.session() as session:
            return await _statuses(session, execution_ids), await _resync(session, lost)


async def _statuses(session: AsyncSession, execution_ids: set[str]) -> list[Execution]:
    ordered = sorted(execution_ids)
    rows: list[Execution] = []
    for start in range(0, len(ordered), _READ_CHUNK):
        chunk = ordered[start : start + _READ_CHUNK]
        rows += await executions.executions_with_ids(session, chunk)
    return rows


async def _resync(
    session: AsyncSession, lost: Sequence[Watcher]
) -> dict[tuple[frozenset[str], str | None], Sequence[Execution]]:
    """For each scope (workspaces and workflow) of the watchers that lost changes: its
    unfinished executions, and those that ended since the earliest of those watchers was
    last caught up."""
    since: dict[tuple[frozenset[str], str | None], datetime] = {}
    for watcher in lost:
        known = since.get(watcher.scope)
        if known is None or watcher.caught_up_at < known:
            since[watcher.scope] = watcher.caught_up_at
    found: dict[tuple[frozenset[str], str | None], Sequence[Execution]] = {}
    for scope, caught_up_at in since.items():
        workspace_ids, workflow_id = scope
        unfinished = await executions.unfinished_executions(
            session, sorted(workspace_ids), workflow_id
        )
        ended = await executions.ended_since(
            session, sorted(workspace_ids), workflow_id, caught_up_at - CAUGHT_UP_MARGIN
        )
        # Oldest first, as they happened.
        found[scope] = sorted([*unfinished, *ended], key=lambda row: row.created_at)
    return found
