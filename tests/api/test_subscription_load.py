"""Many subscribers cost the database and GraphQL what one costs: one read per change per
process, one result per selection, and never more than their share of pooled connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sqlalchemy import event

from schema.sharing import SharedEventResults
from server.app import create_app
from storage.db import Database
from tests.api.test_executions import create, execute
from tests.api.test_subscriptions import (
    history_while_waiting,
    long_wait_workflow,
    served,
    until,
)
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import RawSubscription, raw_subscription

UPDATES = (
    "subscription($workflowId: ID) { executionUpdates(workflowId: $workflowId) { id status } }"
)
EVENTS = "subscription($id: ID!) { executionEvents(executionId: $id) { sequence type } }"


@contextlib.asynccontextmanager
async def subscribers(
    url: str, token: str, count: int, query: str, variables: dict[str, Any]
) -> AsyncIterator[list[RawSubscription]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                raw_subscription(url, token, query, variables, keep_payloads=True)
            )
            for _ in range(count)
        ]


class Statements:
    """The SQL statements the process sends, counted where SQLAlchemy sends them."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.texts.append(statement)

    def reading(self, table: str) -> int:
        return sum(
            1
            for text in self.texts
            if text.lstrip().upper().startswith("SELECT") and f"FROM {table}" in text
        )


@contextlib.contextmanager
def counted(database: Database) -> Iterator[Statements]:
    statements = Statements()
    event.listen(database.engine.sync_engine, "before_cursor_execute", statements)
    try:
        yield statements
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", statements)


class Checkouts:
    """Pooled connections checked out now, and the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def checkout(self, *_: Any) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def checkin(self, *_: Any) -> None:
        self.now -= 1


@contextlib.contextmanager
def checkouts(database: Database) -> Iterator[Checkouts]:
    pool = database.engine.sync_engine.pool
    counter = Checkouts()
    event.listen(pool, "checkout", counter.checkout)
    event.listen(pool, "checkin", counter.checkin)
    try:
        yield counter
    finally:
        event.remove(pool, "checkout", counter.checkout)
        event.remove(pool, "checkin", counter.checkin)


def statuses(subscription: RawSubscription, execution_id: str) -> list[str]:
    return [
        payload["data"]["executionUpdates"]["status"]
        for payload in subscription.payloads
        if payload["data"]["executionUpdates"]["id"] == execution_id
    ]


async def test_execution_updates_read_each_change_once_whatever_the_number_of_subscribers(
    database: Database, settings, registry, alice: Caller
) -> None:
    app = create_app(settings, database=database, registry=registry)
    count = 30
    async with served(app, alice) as (url, alice):
        feed = app.state.services.updates_feed
        workflow_id = await create(
            alice, [node("start", "Start", "manual_trigger"), node("n", "N")], [edge("start", "n")]
        )
        variables = {"workflowId": workflow_id}
        async with subscribers(url, alice.token, count, UPDATES, variables) as watching:
            await until(lambda: len(feed.watchers) == count)
            hits = SharedEventResults.hits
            with counted(database) as statements:
                execution_id = str((await execute(alice, workflow_id))["id"])
                await until(
                    lambda: all("SUCCEEDED" in statuses(one, execution_id) for one in watching)
                )
            rounds = feed.rounds
        first = statuses(watching[0], execution_id)
        for one in watching:
            assert one.errors == []
            seen = statuses(one, execution_id)
            assert len(seen) == len(set(seen)), "each status once"
            assert seen == first, "every subscriber is sent the same rounds"
    # Each round of changes: one read of the executions table for all 30 subscribers (and a
    # few reads by the mutation and the run itself), not one per subscriber.
    assert statements.reading("executions") <= rounds + 6, statements.texts
    # Each update's result was computed once and sent by the other 29 subscribers.
    assert SharedEventResults.hits - hits >= count - 1


async def test_a_wake_storm_of_many_subscribers_holds_no_more_than_their_share_of_connections(
    database: Database, settings, registry, alice: Caller
) -> None:
    budget = 2
    app = create_app(
        settings.model_copy(update={"subscription_db_connections": budget}),
        database=database,
        registry=registry,
    )
    count = 60
    async with served(app, alice) as (url, alice):
        services = app.state.services
        workflow_id = await create(alice, *long_wait_workflow())
        execution_id = str((await execute(alice, workflow_id))["id"])
        history = await history_while_waiting(database, execution_id)
        variables = {"id": execution_id}
        async with subscribers(url, alice.token, count, EVENTS, variables) as watching:
            await until(lambda: all(one.received >= history for one in watching), within_s=30)
            joined = services.live_reads.joined

            async def storm() -> None:
                # Every subscriber of the execution is woken at once (as by a claim), again
                # and again: each time, all of them read the database to catch up.
                for _ in range(5):
                    services.fanout.wake([execution_id])
                    await asyncio.sleep(0)
                await until(lambda: not services.live_reads._under_way, within_s=30)

            with checkouts(database) as pool:
                await storm()
            # Mutations during a storm find connections.
            other = await create(alice, [node("start", "Start", "manual_trigger")], [])
            done, _ = await asyncio.wait_for(
                asyncio.gather(asyncio.gather(*(execute(alice, other) for _ in range(5))), storm()),
                30,
            )
            assert all(one.errors == [] for one in watching)
        await services.submitter.cancel(execution_id)
    assert all(result["__typename"] == "Execution" for result in done)
    # The subscriptions' reads (within the budget) and a token lookup at most: 60 catch-ups
    # at once used to take 60 connections, or as many as the pool had.
    assert pool.peak <= budget + 1, pool.peak
    assert services.live_reads.joined - joined >= count, "catch-ups shared their reads"


async def test_token_checks_of_many_subscribers_stay_within_the_subscriptions_budget(
    database: Database, settings, registry, alice: Caller, make_caller, monkeypatch
) -> None:
    """Subscribers of many users check their tokens again (here: at every idle check): each
    check is a read of the database, made within the subscriptions' budget of connections,
    not from the pool that requests need."""
    from resolvers import subscriptions

    monkeypatch.setattr(subscriptions, "IDLE_CHECK_S", 0.1)
    monkeypatch.setattr(subscriptions, "RECHECK_S", 0.0)
    budget = 2
    app = create_app(
        settings.model_copy(update={"subscription_db_connections": budget}),
        database=database,
        registry=registry,
    )
    users = [await make_caller() for _ in range(24)]
    async with served(app, alice) as (url, _), contextlib.AsyncExitStack() as stack:
        watching = [
            await stack.enter_async_context(raw_subscription(url, user.token, UPDATES, {}))
            for user in users
        ]
        feed = app.state.services.updates_feed
        await until(lambda: len(feed.watchers) == len(users), within_s=10)
        with checkouts(database) as pool:
            await asyncio.sleep(1.0)  # ten idle checks of every subscriber: what is measured
        assert all(one.errors == [] for one in watching)
    # The subscriptions' budget, and the embedded scheduler's read once a second beside it
    # (24 lookups from the pool reached 5 to 8 at once).
    assert pool.peak <= budget + 1, pool.peak
