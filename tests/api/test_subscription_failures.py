"""Failures while a subscription streams: a fault is masked and logged with the request id;
a database that is unavailable for a while (connections killed, connections refused) delays
the stream, which goes on once it is back; one that stays unavailable ends the stream with
the typed UNAVAILABLE error. Real failures, on a database of the test's own."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from server.app import create_app
from storage import accounts
from storage.db import Database
from storage.migrate import upgrade
from tests.api.test_executions import create, execute
from tests.api.test_subscriptions import (
    history_while_waiting,
    long_wait_workflow,
    served,
    stored,
    until,
)
from tests.conftest import PG_URL, Caller, require_postgres
from tests.live import RawSubscription, raw_subscription

EVENTS = "subscription($id: ID!) { executionEvents(executionId: $id) { sequence type status } }"
UPDATES = (
    "subscription($workflowId: ID) { executionUpdates(workflowId: $workflowId) { id status } }"
)
RETRYING = "subscription read failed, the database is unavailable"
CANCEL = "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }"


def errors_of(subscription: RawSubscription) -> list[dict[str, Any]]:
    """The GraphQL errors the subscription received (in `next` or `error` messages)."""
    found: list[dict[str, Any]] = []
    for error in subscription.errors:
        if isinstance(error, list):
            found += error
        elif isinstance(error, dict) and error.get("type") == "error":
            found += error["payload"]
    return found


def last_update(subscription: RawSubscription, execution_id: str) -> str | None:
    statuses = [
        payload["data"]["executionUpdates"]["status"]
        for payload in subscription.payloads
        if payload.get("data") and payload["data"]["executionUpdates"]["id"] == execution_id
    ]
    return statuses[-1] if statuses else None


def completed(subscription: RawSubscription) -> bool:
    return any(
        isinstance(error, dict) and error.get("type") == "complete" for error in subscription.errors
    )


async def test_a_fault_mid_stream_is_masked_and_logged_with_the_request_id(
    database: Database, settings, registry, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, database=database, registry=registry)
    async with served(app, alice) as (url, alice):
        services = app.state.services
        workflow_id = await create(alice, *long_wait_workflow())
        execution_id = str((await execute(alice, workflow_id))["id"])
        history = await history_while_waiting(database, execution_id)
        async with raw_subscription(
            url, alice.token, EVENTS, {"id": execution_id}, keep_payloads=True
        ) as events:
            await until(lambda: events.received >= history)
            # A stored event the server cannot read (as a bug or a bad migration would
            # leave it); the subscriber catches up and meets it.
            async with database.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    text(
                        "INSERT INTO execution_events (execution_id, sequence, type, at) "
                        "VALUES (:id, :sequence, 'NO_SUCH_TYPE', CURRENT_TIMESTAMP)"
                    ).bindparams(id=execution_id, sequence=history + 1)
                )
            services.fanout.wake([execution_id])
            await until(lambda: completed(events))
        async with database.transaction() as session:
            await session.exec(  # type: ignore[call-overload]
                text("DELETE FROM execution_events WHERE type = 'NO_SUCH_TYPE'")
            )
        await services.submitter.cancel(execution_id)
    (error,) = errors_of(events)
    request_id = error["extensions"]["requestId"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["message"] == f"Internal server error (request id {request_id})"
    assert "NO_SUCH_TYPE" not in str(events.errors)
    logged = [record for record in caplog.records if request_id in record.getMessage()]
    assert logged and "NO_SUCH_TYPE" in str(logged[0].exc_info[1])  # type: ignore[index]


async def test_a_fault_of_the_updates_reader_ends_its_watchers_masked_and_it_goes_on(
    database: Database, settings, registry, alice: Caller
) -> None:
    app = create_app(settings, database=database, registry=registry)
    async with served(app, alice) as (url, alice):
        services = app.state.services
        workflow_id = await create(alice, *long_wait_workflow())
        variables = {"workflowId": workflow_id}
        async with raw_subscription(url, alice.token, UPDATES, variables) as updates:
            await until(lambda: len(services.updates_feed.watchers) == 1)
            execution_id = str((await execute(alice, workflow_id))["id"])
            await until(lambda: updates.received >= 1)
            async with database.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    text("UPDATE executions SET status = 'NO_SUCH' WHERE id = :id").bindparams(
                        id=execution_id
                    )
                )
            services.fanout.wake([execution_id])
            await until(lambda: completed(updates))
        (error,) = errors_of(updates)
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        async with database.transaction() as session:
            await session.exec(  # type: ignore[call-overload]
                text("UPDATE executions SET status = 'RUNNING' WHERE id = :id").bindparams(
                    id=execution_id
                )
            )
        # Subscribing again works: the reader survived.
        async with raw_subscription(
            url, alice.token, UPDATES, variables, keep_payloads=True
        ) as again:
            await until(lambda: len(services.updates_feed.watchers) == 1)
            await alice.gql(CANCEL, {"id": execution_id})
            await until(lambda: last_update(again, execution_id) == "CANCELLED")
            assert again.errors == []


# PostgreSQL: connections killed and refused, on a database of the test's own.


class OwnDatabase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.admin = Database(PG_URL)
        self.database = Database(PG_URL.rsplit("/", 1)[0] + f"/{name}")

    async def _admin(self, *statements: str) -> None:
        async with self.admin.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await connection.execute(text(statement), {"name": self.name})

    async def kill_connections(self) -> None:
        """pg_terminate_backend on every connection to this database (ours only)."""
        await self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :name AND pid <> pg_backend_pid()"
        )

    async def refuse_connections(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        await self.kill_connections()

    async def accept_connections(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
async def own() -> AsyncIterator[OwnDatabase]:
    await require_postgres()
    own = OwnDatabase(f"loom_failures_{uuid.uuid4().hex[:10]}")
    await own._admin(f'CREATE DATABASE "{own.name}"')
    try:
        await upgrade(own.database)
        yield own
    finally:
        await own.database.dispose()
        await own._admin(f'DROP DATABASE IF EXISTS "{own.name}" WITH (FORCE)')
        await own.admin.dispose()


async def own_caller(own: OwnDatabase) -> Caller:
    async with own.database.transaction() as session:
        user = await accounts.create_user(session, "carol", accounts.ROLE_MEMBER)
        _, token = await accounts.create_token(session, user.id, "test")
    # Its HTTP client is the app's, once served.
    return Caller(http=None, user_id=user.id, name="carol", token=token)  # type: ignore[arg-type]


async def _watch_through(
    own: OwnDatabase,
    settings: Any,
    registry: Any,
    caplog: pytest.LogCaptureFixture,
    outage: Any,
) -> tuple[RawSubscription, RawSubscription, list[dict[str, Any]]]:
    """An execution watched by executionEvents and executionUpdates through `outage`, then
    cancelled: what both subscribers received, and what is stored."""
    caplog.set_level(logging.WARNING, "loom.subscriptions")
    app = create_app(settings, database=own.database, registry=registry)
    carol = await own_caller(own)
    async with served(app, carol) as (url, carol):
        services = app.state.services
        workflow_id = await create(carol, *long_wait_workflow())
        async with raw_subscription(
            url, carol.token, UPDATES, {"workflowId": workflow_id}, keep_payloads=True
        ) as updates:
            await until(lambda: len(services.updates_feed.watchers) == 1)
            execution_id = str((await execute(carol, workflow_id))["id"])
            history = await history_while_waiting(own.database, execution_id)
            async with raw_subscription(
                url, carol.token, EVENTS, {"id": execution_id}, keep_payloads=True
            ) as events:
                await until(lambda: events.received >= history)
                await until(lambda: last_update(updates, execution_id) is not None)
                await outage(services, execution_id)
                await carol.gql(CANCEL, {"id": execution_id})
                await until(lambda: completed(events), within_s=30)
                await until(lambda: last_update(updates, execution_id) == "CANCELLED", 30)
    return events, updates, await stored(own.database, execution_id)


@pytest.mark.postgres
async def test_connections_killed_mid_stream_are_retried_and_both_streams_go_on(
    own: OwnDatabase, settings, registry, caplog: pytest.LogCaptureFixture
) -> None:
    async def killed(services: Any, execution_id: str) -> None:
        await own.kill_connections()
        # Both subscriptions read now (a catch-up, a round of updates), on dead connections.
        services.fanout.wake([execution_id])
        await until(lambda: RETRYING in caplog.text)

    events, updates, expected = await _watch_through(own, settings, registry, caplog, killed)
    assert errors_of(events) == [] and errors_of(updates) == []
    sent = [payload["data"]["executionEvents"] for payload in events.payloads]
    assert [event["sequence"] for event in sent] == [event["sequence"] for event in expected]
    assert sent[-1]["status"] == "CANCELLED"


@pytest.mark.postgres
async def test_a_database_refusing_connections_for_a_while_delays_streams_without_ending_them(
    own: OwnDatabase, settings, registry, caplog: pytest.LogCaptureFixture
) -> None:
    async def refused(services: Any, execution_id: str) -> None:
        await own.refuse_connections()
        try:
            services.fanout.wake([execution_id])
            await until(lambda: caplog.text.count(RETRYING) >= 4)
        finally:
            await own.accept_connections()

    events, updates, expected = await _watch_through(own, settings, registry, caplog, refused)
    assert errors_of(events) == [] and errors_of(updates) == []
    sent = [payload["data"]["executionEvents"] for payload in events.payloads]
    assert [event["sequence"] for event in sent] == [event["sequence"] for event in expected]


@pytest.mark.postgres
async def test_a_database_that_stays_unavailable_ends_streams_with_unavailable(
    own: OwnDatabase, settings, registry
) -> None:
    app = create_app(
        settings.model_copy(update={"subscription_retry_s": 1.0}),
        database=own.database,
        registry=registry,
    )
    carol = await own_caller(own)
    async with served(app, carol) as (url, carol):
        services = app.state.services
        workflow_id = await create(carol, *long_wait_workflow())
        execution_id = str((await execute(carol, workflow_id))["id"])
        history = await history_while_waiting(own.database, execution_id)
        async with (
            raw_subscription(url, carol.token, EVENTS, {"id": execution_id}) as events,
            raw_subscription(url, carol.token, UPDATES, {"workflowId": workflow_id}) as updates,
        ):
            await until(lambda: events.received >= history)
            await until(lambda: len(services.updates_feed.watchers) == 1)
            await own.refuse_connections()
            try:
                services.fanout.wake([execution_id])
                await until(lambda: completed(events) and completed(updates), within_s=30)
            finally:
                await own.accept_connections()
        for subscription in (events, updates):
            (error,) = errors_of(subscription)
            assert error["extensions"]["code"] == "UNAVAILABLE", error
            assert "subscribe again" in error["message"]
        # Back: subscribing again works.
        async with raw_subscription(
            url, carol.token, EVENTS, {"id": execution_id}, keep_payloads=True
        ) as again:
            await until(lambda: again.received >= history, within_s=30)
            assert again.errors == []
        await carol.gql(CANCEL, {"id": execution_id})
