"""Subscriptions: the live events of one execution, and status changes for execution lists.

`executionEvents` sends what is stored first (from the start, or after `afterSequence`),
then the live tail, switching by sequence: the subscriber registers for live events before
it reads the database, drops live events it has already sent, and goes back to the
database on a gap, an overflow of its buffer, a wake-up or a long silence. It completes
after EXECUTION_FINISHED.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from engine.bus import EventFanout, ExecutionStream, SubscriptionLimitError
from resolvers import mapping
from resolvers.auth import token_from_header
from resolvers.context import Context
from resolvers.errors import BAD_USER_INPUT, UNAUTHENTICATED, RequestError
from schema import execution_types as xtypes
from schema.sharing import shared_data
from storage import executions
from storage.accounts import Principal

Info = strawberry.Info[Context, None]

NOT_FOUND = "NOT_FOUND"
SUBSCRIPTION_LIMIT = "SUBSCRIPTION_LIMIT"
# Stored events read per query.
HISTORY_PAGE = 500
# With nothing live for this long, check the database anyway (a lost message costs at most
# this much delay; a WAITING execution costs one small query per subscriber this often).
IDLE_CHECK_S = 10.0
# Executions whose last status an `executionUpdates` subscriber remembers (to send changes
# only).
_UPDATES_MEMORY = 1000
_TERMINAL = frozenset(("SUCCEEDED", "FAILED", "CANCELLED"))
_FINISHED = xtypes.ExecutionEventType.EXECUTION_FINISHED


async def _subscriber(info: Info) -> Principal:
    """The caller, authenticated again as each subscription starts: a token revoked since
    the connection opened stops working."""
    context = info.context
    params = context.connection_params or {}
    header = params.get("Authorization")
    token = token_from_header(header) if isinstance(header, str) else None
    principal = await context.services.authenticator.authenticate(token)
    if principal is None:
        raise RequestError("authentication required: invalid or revoked token", UNAUTHENTICATED)
    context.principal = principal
    return principal


def _fanout(info: Info) -> EventFanout:
    fanout = info.context.services.fanout
    if fanout is None:
        raise RequestError("live events are not served by this process", "UNAVAILABLE")
    return fanout


async def execution_events(
    info: Info,
    execution_id: strawberry.ID,
    after_sequence: int | None = None,
) -> AsyncGenerator[xtypes.ExecutionEvent, None]:
    viewer = await _subscriber(info)
    if after_sequence is not None and after_sequence < 0:
        raise RequestError("afterSequence must be 0 or more", BAD_USER_INPUT, field="afterSequence")
    identifier = str(execution_id)
    database = info.context.database
    async with database.session() as session:
        found = await executions.get_execution(session, identifier, viewer.workspace_ids)
    if found is None:
        raise RequestError(f"execution {identifier!r} not found", NOT_FOUND, id=identifier)
    fanout = _fanout(info)
    send = info.context.direct_senders.get(asyncio.current_task())
    raw = info._raw_info
    values: Any = raw.variable_values  # graphql-core's coerced values (a dict, or in
    # newer releases a VariableValues with `.coerced`)
    selection: tuple[Any, dict[str, Any], dict[str, Any]] = (
        raw.operation,
        raw.fragments,
        getattr(values, "coerced", values),
    )
    try:
        stream = fanout.open(identifier)
    except SubscriptionLimitError as exc:
        raise RequestError(str(exc), SUBSCRIPTION_LIMIT) from exc
    try:
        last = after_sequence or 0
        caught_up = False
        while True:
            # What is stored (first the history, later a catch-up). Live events arriving
            # meanwhile stay buffered; those already read are dropped by sequence below.
            if caught_up:
                await _subscriber(info)  # still allowed? (a token revoked meanwhile ends it)
            caught_up = True
            stream.reset()
            while True:
                async with database.session() as session:
                    # The status first: if the execution had ended by then, its
                    # EXECUTION_FINISHED (committed with the status) is in the events read
                    # next, or was at or before `last` when none come after it.
                    finished = await executions.is_finished(session, identifier)
                    rows = await executions.events(session, identifier, last, HISTORY_PAGE)
                if not rows and finished:
                    return
                for row in rows:
                    yield mapping.event_row(row)
                    last = row.sequence
                    if row.type == _FINISHED.name:
                        return
                if len(rows) < HISTORY_PAGE:
                    break
            async for event in _live(stream, last):
                # Another subscriber here already resolved this event for the same selection:
                # send that, past Strawberry's per-result work (most of the cost of a live
                # event with many subscribers).
                data = None if send is None else await shared_data(event, *selection)
                if data is not None:
                    assert send is not None
                    if not await send(data):
                        return
                else:
                    yield event
                last = event.sequence
                if event.type is _FINISHED:
                    return
    finally:
        fanout.close(stream)


async def _live(stream: ExecutionStream, last: int) -> AsyncGenerator[xtypes.ExecutionEvent, None]:
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
    fanout = _fanout(info)
    workflow = None if workflow_id is None else str(workflow_id)
    database = info.context.database
    try:
        stream = fanout.open_updates()
    except SubscriptionLimitError as exc:
        raise RequestError(str(exc), SUBSCRIPTION_LIMIT) from exc
    sent: OrderedDict[str, str] = OrderedDict()  # last status sent, by execution id
    try:
        while True:
            changed, resync = await stream.take(IDLE_CHECK_S)
            viewer = await _subscriber(info)
            check = set(changed)
            if resync or not changed:
                # Something may have been lost, or nothing came for a while: look again at
                # what this subscriber shows as not finished (and, after a loss, at every
                # unfinished execution of the viewer).
                check.update(i for i, status in sent.items() if status not in _TERMINAL)
            async with database.session() as session:
                rows = list(
                    await executions.executions_by_ids(
                        session, check, viewer.workspace_ids, workflow
                    )
                )
                if resync:
                    rows += await executions.unfinished_executions(
                        session, viewer.workspace_ids, workflow
                    )
            for row in rows:
                if sent.get(row.id) == row.status:
                    continue
                sent[row.id] = row.status
                sent.move_to_end(row.id)
                while len(sent) > _UPDATES_MEMORY:
                    sent.popitem(last=False)
                yield mapping.execution(row)
    finally:
        fanout.close(stream)
