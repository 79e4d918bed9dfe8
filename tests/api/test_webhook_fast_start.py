"""Embedded mode's one-write start of webhook runs (storage/starts.py): the execution is
inserted claimed with its first two events in one transaction, the runner takes it from
memory, and a waiting webhook is handed its answer in memory; what is recorded is what the
general path (create, then load and claim) records. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select

from engine.submitter import InProcessSubmitter
from server.app import create_app
from storage import webhooks
from storage.models import Execution, ExecutionEventRow
from tests.api.test_executions import create
from tests.api.test_webhooks import activate, hook_workflow
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import serve

SET = node(
    "total",
    "Total",
    "set",
    parameters={"fields": [{"name": "total", "value": "{{ $json.body.price * 2 }}"}]},
)
ANSWER = node("answer", "Answer", "respond_to_webhook", parameters={})


@pytest.fixture
async def app(database, settings, registry) -> Any:
    return create_app(settings, database=database, registry=registry)


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client


@contextmanager
def transactions(database) -> Iterator[list[list[str]]]:
    """The statements sent, grouped by the transaction they ran in (in the order each
    transaction ended), each upper-cased."""
    ended: list[list[str]] = []
    open_: dict[int, list[str]] = {}

    def on_statement(conn, cursor, statement, parameters, context, executemany):
        open_.setdefault(id(conn), []).append(" ".join(statement.split()).upper())

    def on_end(conn):
        ended.append(open_.pop(id(conn), []))

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_end)
    event.listen(engine, "rollback", on_end)
    try:
        yield ended
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_end)
        event.remove(engine, "rollback", on_end)


def _writes(transaction: list[str]) -> bool:
    return any(s.startswith(("INSERT", "UPDATE", "DELETE")) for s in transaction)


def _claims(statement: str) -> bool:
    """Whether the statement is a claim (it moves the lease generation on)."""
    return statement.startswith("UPDATE EXECUTIONS") and (
        "LEASE_GENERATION=(EXECUTIONS.LEASE_GENERATION +" in statement
    )


async def _finished(app: Any, execution_id: str) -> None:
    submitter = app.state.services.submitter
    assert isinstance(submitter, InProcessSubmitter)
    await submitter.wait(execution_id)


async def _record(database, execution_id: str) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """The execution row's lifecycle columns and its events, as comparable values."""
    async with database.session() as session:
        row = await session.get(Execution, execution_id, populate_existing=True)
        events = await session.exec(
            select(ExecutionEventRow)
            .where(ExecutionEventRow.execution_id == execution_id)
            .order_by(ExecutionEventRow.sequence)
        )
        assert row is not None
        columns = {
            "status": row.status,
            "mode": row.mode,
            "lease_generation": row.lease_generation,
            "lease_owner": row.lease_owner,
            "started": row.started_at is not None,
            "admitted": row.admitted_at is not None,
            "finished": row.finished_at is not None,
            "start_node_id": row.start_node_id,
            "error": row.error,
        }
        return columns, [
            (e.sequence, e.type, e.node_id, e.status, e.attempt, e.output_items)
            for (e,) in events.all()
        ]


async def test_a_webhook_start_is_one_write_and_the_run_reads_nothing_back(
    app: Any, http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    await hook_workflow(alice, {"path": "fast"}, [SET])
    with transactions(database) as seen:
        response = await http.post("/webhook/fast", json={"price": 4})
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]
        await _finished(app, execution_id)
    writes = [transaction for transaction in seen if _writes(transaction)]
    start, *recording = writes
    # One transaction: the execution (claimed), its input, its first two events; on
    # PostgreSQL first its workflow held FOR SHARE, so that a move of the workflow to another
    # workspace and the start take turns (storage.executions.lock_workflows).
    held = ["SELECT WORKFLOWS.ID, WORKFLOWS.WORKSPACE_ID FROM WORKFLOWS WHERE WORKFLOWS.ID IN"]
    assert [s.split("(")[0].strip() for s in start] == [
        *([] if database.is_sqlite else held),
        "INSERT INTO EXECUTIONS",
        "INSERT INTO EXECUTION_PAYLOADS",
        "INSERT INTO EXECUTION_EVENTS",
    ]
    # Then only the group-commit writer's rounds: no claim, no read of the execution.
    statements = [s for transaction in seen for s in transaction]
    assert not [s for s in statements if _claims(s)]
    assert not [s for s in statements if "JOIN WORKFLOW_VERSIONS" in s and "EXECUTIONS" in s]
    assert all("INSERT INTO EXECUTIONS " not in s for t in recording for s in t)
    columns, events = await _record(database, execution_id)
    assert columns["status"] == "SUCCEEDED"
    assert columns["lease_generation"] == 1
    assert [(sequence, kind) for sequence, kind, *_ in events][:2] == [
        (1, "EXECUTION_QUEUED"),
        (2, "EXECUTION_STARTED"),
    ]


async def test_records_equal_those_of_the_general_path(
    app: Any, http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    """The same workflow, once started in one write and once through the general path (a
    concurrency limit makes it queue): the same row, events and sequence numbers."""
    await hook_workflow(alice, {"path": "fast-one"}, [SET])
    nodes = [node("hook", "Hook", "webhook", parameters={"path": "queued-one"}), SET]
    limited = await create(
        alice, nodes, [edge("hook", "total")], settings={"maxConcurrentExecutions": 5}
    )
    await activate(alice, limited)
    records = []
    for path in ("fast-one", "queued-one"):
        with transactions(database) as seen:
            response = await http.post(f"/webhook/{path}", json={"price": 4})
            execution_id = response.json()["executionId"]
            await _finished(app, execution_id)
        records.append(await _record(database, execution_id))
        claims = [s for t in seen for s in t if _claims(s)]
        assert bool(claims) == (path == "queued-one"), claims
    assert records[0] == records[1]
    assert [kind for _, kind, *_ in records[0][1]] == [
        "EXECUTION_QUEUED",
        "EXECUTION_STARTED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "EXECUTION_FINISHED",
    ]


@pytest.mark.parametrize("mode", ["last_node", "respond_node"])
async def test_the_answer_is_handed_over_in_memory(
    app: Any, http: httpx.AsyncClient, alice: Caller, database: Any, mode: str
) -> None:
    after = [SET, ANSWER] if mode == "respond_node" else [SET]
    await hook_workflow(alice, {"path": f"answer-{mode}", "responseMode": mode}, after)
    with transactions(database) as seen:
        response = await http.post(f"/webhook/answer-{mode}", json={"price": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    expected_total = 8
    assert body[0]["total"] == expected_total
    reads = [s for t in seen for s in t if s.startswith("SELECT")]
    assert not [s for s in reads if "PAYLOADS" in s or "EXECUTIONS.OUTPUT" in s], reads


async def test_concurrent_requests_with_one_idempotency_key_start_one_run(
    app: Any, http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    await hook_workflow(alice, {"path": "keyed", "responseMode": "last_node"}, [SET])
    responses = await asyncio.gather(
        *(
            http.post("/webhook/keyed", json={"price": n}, headers={"Idempotency-Key": "same"})
            for n in range(5)
        )
    )
    assert {response.status_code for response in responses} == {200}
    # Every request answers with the one run's result (whichever request started it).
    assert len({response.text for response in responses}) == 1
    async with database.session() as session:
        rows = (await session.exec(select(Execution.id))).all()
    assert len(rows) == 1


async def _stored(app: Any, database: Any, path: str) -> Any:
    """An execution of the route at `path` stored claimed by this process, but not run (as
    if the process stopped right after the commit)."""
    async with database.session() as session:
        route = await webhooks.lookup(session, "POST", path)
    assert route is not None
    starts = app.state.services.starts
    item = {"body": {"price": 4}, "query": {}, "headers": {}, "method": "POST", "path": path}
    started = starts.prepare(route, mode="webhook", input=item, start_node_id=route.node_id)
    await starts.writer.create(started.new)
    return started


async def test_a_cancel_before_the_run_begins_is_recorded(
    app: Any, http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    await hook_workflow(alice, {"path": "cancel-early"}, [SET])
    started = await _stored(app, database, "cancel-early")
    submitter = app.state.services.submitter
    submitter.start(started.loaded)
    # Its task has not begun: the cancel reaches the run through the execution.
    assert await submitter.cancel(started.loaded.execution_id)
    columns, events = await _record(database, started.loaded.execution_id)
    assert columns["status"] == "CANCELLED"
    assert [(sequence, kind, status) for sequence, kind, _, status, *_ in events] == [
        (1, "EXECUTION_QUEUED", "QUEUED"),
        (2, "EXECUTION_STARTED", "RUNNING"),
        (3, "EXECUTION_FINISHED", "CANCELLED"),
    ]


async def test_a_start_interrupted_before_its_run_resumes_on_the_next_start(
    database: Any, settings: Any, registry: Any, alice: Caller
) -> None:
    first = create_app(settings, database=database, registry=registry)
    async with serve(first):
        await hook_workflow(alice, {"path": "crash"}, [SET])
        started = await _stored(first, database, "crash")
        # The process stops before the run's task begins (as if it died after the commit).
    second = create_app(settings, database=database, registry=registry)
    async with serve(second):
        for _ in range(200):
            columns, events = await _record(database, started.loaded.execution_id)
            if columns["status"] == "SUCCEEDED":
                break
            await asyncio.sleep(0.05)
    assert columns["status"] == "SUCCEEDED"
    assert [kind for _, kind, *_ in events] == [
        "EXECUTION_QUEUED",
        "EXECUTION_STARTED",
        "EXECUTION_RESUMED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "EXECUTION_FINISHED",
    ]
