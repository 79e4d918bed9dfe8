"""Subscriptions: the live events of one execution, and status changes for execution lists.

`executionEvents` sends what is stored first (from the start, or after `afterSequence`),
then the live tail, switching by sequence: the subscriber registers for live events before
it reads the database, drops live events it has already sent, and goes back to the
database on a gap, an overflow of its buffer, a wake-up or a long silence. It completes
after EXECUTION_FINISHED. `executionUpdates` is served by the process's one reader of
status changes (resolvers/updates_feed.py).

What a subscriber costs: the events and executions it sends are objects shared by every
subscriber of this process, so the result of a selection on one, and its JSON, are computed
once and the other subscribers send them straight to their websocket (schema/sharing.py).
Database reads go through `LiveReads`: a few at a time, identical reads under way shared,
and retried while the database is unavailable; a subscription ends only with a typed error
(UNAVAILABLE when the database stays unavailable) or, for `executionEvents`, at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

import strawberry

from engine.bus import EventFanout, ExecutionStream, SubscriptionLimitError
from resolvers import mapping
from resolvers.auth import connection_token
from resolvers.context import Context, DirectSender
from resolvers.errors import BAD_USER_INPUT, UNAUTHENTICATED, RequestError
from resolvers.live_reads import LiveReads, LiveUnavailableError
from resolvers.updates_feed import UpdatesFeed
from schema import execution_types as xtypes
from schema.sharing import Selection, SharedEventResults, SharedResult
from storage import executions
from storage.accounts import Principal

Info = strawberry.Info[Context, None]
T = TypeVar("T")

NOT_FOUND = "NOT_FOUND"
SUBSCRIPTION_LIMIT = "SUBSCRIPTION_LIMIT"
UNAVAILABLE = "UNAVAILABLE"
# Stored events read per query.
HISTORY_PAGE = 500
# With nothing live for this long, check the database anyway (a lost message costs at most
# this much delay; a WAITING execution costs one small query this often), and the token.
IDLE_CHECK_S = 10.0
# A streaming subscription checks its token again at most this often.
RECHECK_S = 1.0
_FINISHED = xtypes.ExecutionEventType.EXECUTION_FINISHED


async def _subscriber(info: Info) -> Principal:
    """The caller, authenticated again as each subscription starts: a token revoked since
    the connection opened stops working."""
    context = info.context
    principal = await context.services.authenticator.authenticate(
        connection_token(context.connection_params), context.services.live_reads
    )
    if principal is None:
        raise RequestError("authentication required: invalid or revoked token", UNAUTHENTICATED)
    context.principal = principal
    return principal


class _Viewer:
    """The subscriber, checked again mid-stream at most every `RECHECK_S`: a token revoked
    meanwhile ends the stream, an ended membership takes its workspace away."""

    def __init__(self, info: Info, principal: Principal) -> None:
        self._info = info
        self.principal = principal
        self._checked_at = asyncio.get_running_loop().time()

    async def still_allowed(self) -> Principal:
        """The principal, checked again when due; waits while the database is unavailable,
        as reads do."""
        now = asyncio.get_running_loop().time()
        if now - self._checked_at >= RECHECK_S:
            info = self._info
            self.principal = await _live(info, _reads(info).retrying(lambda: _subscriber(info)))
            self._checked_at = now
        return self.principal


async def _live(info: Info, pending: Awaitable[T]) -> T:
    """What a subscription awaits from the database; UNAVAILABLE, typed, once the database
    has been unavailable for longer than subscriptions wait."""
    try:
        return await pending
    except LiveUnavailableError as exc:
        raise RequestError(
            f"live updates are unavailable: {exc}; subscribe again later (executionEvents: "
            "with afterSequence, to continue where you stopped)",
            UNAVAILABLE,
        ) from exc


def _reads(info: Info) -> LiveReads:
    return info.context.services.live_reads


def _fanout(info: Info) -> EventFanout:
    fanout = info.context.services.fanout
    if fanout is None:
        raise RequestError("live events are not served by this process", UNAVAILABLE)
    return fanout


def _feed(info: Info) -> UpdatesFeed:
    feed = info.context.services.updates_feed
    if feed is None:
        raise RequestError("live events are not served by this process", UNAVAILABLE)
    return feed


class _Sender:
    """Sends shared results past Strawberry when another subscriber of this process has
    computed them, several at a time; the first subscriber yields them to Strawberry."""

    def __init__(self, info: Info) -> None:
        self._send: DirectSender | None = info.context.direct_senders.get(asyncio.current_task())
        raw = info._raw_info
        # graphql-core's coerced values: a dict, or in newer releases a VariableValues.
        values: Any = raw.variable_values
        values = getattr(values, "coerced", values)
        self._selection = Selection(raw.operation, raw.fragments, values)
        self._batch: list[SharedResult] = []
        # The client is gone: the caller stops.
        self.closed = False

    async def add(self, payload: Any) -> bool:
        """Queue `payload` to be sent directly, when its result is shared (waiting for it
        when another subscriber is computing it); False when the caller must `flush` and
        then yield it (it had no result to share, or one with errors)."""
        if self._send is None:
            return False
        shared = self._selection.find(payload)
        if shared is None:
            return False
        if shared.pending:
            await shared.wait()
        if shared.result is None:
            return False
        SharedEventResults.hits += 1
        self._batch.append(shared)
        return True

    async def flush(self) -> None:
        """Send what `add` queued."""
        if self._batch and self._send is not None:
            batch, self._batch = self._batch, []
            if not await self._send(batch):
                self.closed = True


async def execution_events(
    info: Info,
    execution_id: strawberry.ID,
    after_sequence: int | None = None,
) -> AsyncGenerator[xtypes.ExecutionEvent, None]:
    viewer = await _subscriber(info)
    allowed = _Viewer(info, viewer)
    if after_sequence is not None and after_sequence < 0:
        raise RequestError("afterSequence must be 0 or more", BAD_USER_INPUT, field="afterSequence")
    identifier = str(execution_id)
    reads = _reads(info)
    workspaces = tuple(sorted(viewer.workspace_ids))
    found = await _live(
        info,
        reads.read(
            ("execution", identifier, workspaces),
            lambda session: executions.get_execution(session, identifier, workspaces),
        ),
    )
    if found is None:
        raise RequestError(f"execution {identifier!r} not found", NOT_FOUND, id=identifier)
    fanout = _fanout(info)
    sender = _Sender(info)
    workspace_id = found.workspace_id

    async def still_allowed() -> None:
        """Ends the stream when the token was revoked (UNAUTHENTICATED) or the viewer left
        the execution's workspace (NOT_FOUND); checked at most every `RECHECK_S`."""
        principal = await allowed.still_allowed()
        if workspace_id not in principal.workspace_ids:
            raise RequestError(f"execution {identifier!r} not found", NOT_FOUND, id=identifier)

    try:
        stream = fanout.open(identifier)
    except SubscriptionLimitError as exc:
        raise RequestError(str(exc), SUBSCRIPTION_LIMIT) from exc
    try:
        last = after_sequence or 0
        while True:
            # What is stored (first the history, later a catch-up). Live events arriving
            # meanwhile stay buffered; those already read are dropped by sequence below.
            stream.reset()
            while True:
                await still_allowed()
                finished, stored = await _live(info, _stored_events(reads, identifier, last))
                if not stored and finished:
                    return
                for event in stored:
                    if not await sender.add(event):
                        await sender.flush()
                        yield event
                    last = event.sequence
                    if event.type is _FINISHED:
                        break
                await sender.flush()
                if sender.closed or last == _finished_at(stored):
                    return
                if len(stored) < HISTORY_PAGE:
                    break
            async for event in _live_tail(stream, last):
                await still_allowed()
                if not await sender.add(event):
                    await sender.flush()
                    yield event
                last = event.sequence
                if event.type is _FINISHED or not stream.items:
                    await sender.flush()  # what is ready now goes out together
                if sender.closed or event.type is _FINISHED:
                    return
            await sender.flush()
            if sender.closed:
                return
    finally:
        fanout.close(stream)


def _finished_at(events: list[xtypes.ExecutionEvent]) -> int | None:
    """The sequence of EXECUTION_FINISHED among `events`, if there."""
    return next((event.sequence for event in events if event.type is _FINISHED), None)


def _stored_events(
    reads: LiveReads, execution_id: str, after: int
) -> Awaitable[tuple[bool, list[xtypes.ExecutionEvent]]]:
    """Whether the execution had finished, and the stored events after `after`: one read,
    and one list of shared events, for every subscriber that asks at the same time."""

    async def read(session: Any) -> tuple[bool, list[xtypes.ExecutionEvent]]:
        # The status first: if the execution had ended by then, its EXECUTION_FINISHED
        # (committed with the status) is in the events read next, or was at or before
        # `after` when none come after it.
        finished = await executions.is_finished(session, execution_id)
        rows = await executions.events(session, execution_id, after, HISTORY_PAGE)
        return finished, [mapping.event_row(row) for row in rows]

    return reads.read(("events", execution_id, after), read)


async def _live_tail(
    stream: ExecutionStream, last: int
) -> AsyncGenerator[xtypes.ExecutionEvent, None]:
    """Live events in order after `last`; ends when the database must be read instead."""
    while True:
        if not stream.items:
            if stream.overflowed or stream.woken:
                return
            if not await stream.wait(IDLE_CHECK_S):
                return
            continue
        event: xtypes.ExecutionEvent = stream.items.popleft()
        if event.sequence <= last:
            continue
        if event.sequence != last + 1:
            return  # a gap: the missing events are committed, so stored
        yield event
        last = event.sequence


async def execution_updates(
    info: Info, workflow_id: strawberry.ID | None = None
) -> AsyncGenerator[xtypes.Execution, None]:
    viewer = await _subscriber(info)
    allowed = _Viewer(info, viewer)
    feed = _feed(info)
    try:
        watcher = feed.watch(
            viewer.workspace_ids, None if workflow_id is None else str(workflow_id)
        )
    except SubscriptionLimitError as exc:
        raise RequestError(str(exc), SUBSCRIPTION_LIMIT) from exc
    sender = _Sender(info)
    try:
        while True:
            changes = await _live(info, watcher.take(IDLE_CHECK_S))
            # Still allowed, and to which workspaces (a membership may have ended).
            viewer = await allowed.still_allowed()
            watcher.workspace_ids = frozenset(viewer.workspace_ids)
            for change in changes:
                if change.workspace_id not in watcher.workspace_ids:
                    continue
                if not await sender.add(change.execution):
                    await sender.flush()
                    yield change.execution
            await sender.flush()
            if sender.closed:
                return
    finally:
        await feed.stop_watching(watcher)
