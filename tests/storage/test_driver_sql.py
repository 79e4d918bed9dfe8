"""The writer's statements run on the driver (storage/driver_sql.py) store the very bytes
SQLAlchemy's own execution of the same statements stores: each row is written once through
SQLAlchemy (Core, as before) and once through `DriverStatement`, and the two are read back
as the database holds them (SQLite's `quote()`, PostgreSQL's text cast). On both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, bindparam, update
from sqlalchemy.exc import IntegrityError

from engine.events import ErrorInfo, ExecutionUpdate, NodeRunState
from engine.retention import SaveData
from engine.states import ExecutionStatus, NodeRunStatus
from storage import recorder
from storage.db import Database, run_core
from storage.driver_sql import DriverStatement, insert_rows
from storage.event_rows import INSERT_EVENTS
from storage.executions import INSERT_EXECUTION
from storage.models import Execution, NodeRun
from tests.storage.execution_rows import Owner, make_workflow

# Not UTC, with microseconds: what the UTC column type converts.
AT = datetime(2026, 12, 8, 7, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))


def _id() -> str:
    return str(uuid.uuid4())


async def _stored(database: Database, table: Table, key: str, value: str) -> dict[str, Any]:
    """The row's columns as the database holds them, as text (NULL apart from 'null')."""
    if database.is_sqlite:
        columns = ", ".join(f"quote({column.name})" for column in table.c)
    else:
        columns = ", ".join(
            f"CASE WHEN {column.name} IS NULL THEN '<NULL>' ELSE CAST({column.name} AS TEXT) END"
            for column in table.c
        )
    placeholder = "?" if database.is_sqlite else "$1"
    async with database.session() as session:
        connection = await session.connection()
        result = await connection.exec_driver_sql(
            f"SELECT {columns} FROM {table.name} WHERE {key} = {placeholder}", (value,)
        )
        row = result.one()
    return dict(zip([column.name for column in table.c], row, strict=True))


async def _both(
    database: Database, statement: DriverStatement, rows: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """The first row through SQLAlchemy's execution, the second through the driver."""
    async with database.transaction() as session:
        await run_core(session, statement.statement, [rows[0]])
        await statement.run(session, [rows[1]])


def _same_but(first: dict[str, Any], second: dict[str, Any], *differing: str) -> None:
    assert {k: v for k, v in first.items() if k not in differing} == {
        k: v for k, v in second.items() if k not in differing
    }


def _execution(owner: Owner, **values: Any) -> dict[str, Any]:
    table: Table = Execution.__table__  # type: ignore[attr-defined]
    row: dict[str, Any] = {column.name: None for column in table.c}
    row.update(
        id=_id(),
        workspace_id=owner.workspace_id,
        workflow_id=owner.workflow_id,
        workflow_version_id=owner.version_id,
        workflow_version=1,
        status="RUNNING",
        mode="webhook",
        reuse_outputs=False,
        node_only=True,
        parent_waits=False,
        call_depth=0,
        lease_generation=1,
        engine_version="test",
        created_at=AT,
        started_at=AT.astimezone(UTC),
        lease_expires_at=AT + timedelta(seconds=30),
        parked={"n": [{"run": "r", "attempt": 2, "due": "x"}], "ü": "\u00e9"},
        **values,
    )
    return row


async def test_execution_and_event_rows_are_stored_as_sqlalchemy_stores_them(
    database: Database,
) -> None:
    owner = await make_workflow(database)
    executions = (_execution(owner), _execution(owner, error={"message": "boom", "n": 1.5}))
    await _both(database, INSERT_EXECUTION, executions)
    table: Table = Execution.__table__  # type: ignore[attr-defined]
    first, second = [await _stored(database, table, "id", row["id"]) for row in executions]
    _same_but(first, second, "id", "error")

    events = tuple(
        {
            "execution_id": executions[0]["id"],
            "sequence": sequence,
            "type": "NODE_SUCCEEDED",
            "at": AT,
            "node_id": "n",
            "node_name": "N ü",
            "attempt": 1,
            "status": "SUCCEEDED",
            "duration_ms": 1.25,
            "input_items": 1,
            "output_items": 2,
            "error": None,
            "preview": [{"a": 1, "b": [True, None, "x"]}],
        }
        for sequence in (1, 2)
    )
    await _both(database, INSERT_EVENTS, events)
    events_table = INSERT_EVENTS.statement.table
    async with database.session() as session:
        connection = await session.connection()
        placeholder = "?" if database.is_sqlite else "$1"
        quoted = (
            ", ".join(f"quote({c.name})" for c in events_table.c)
            if database.is_sqlite
            else ", ".join(
                f"CASE WHEN {c.name} IS NULL THEN '<NULL>' ELSE CAST({c.name} AS TEXT) END"
                for c in events_table.c
            )
        )
        stored = (
            await connection.exec_driver_sql(
                f"SELECT {quoted} FROM execution_events WHERE execution_id = {placeholder} "
                "ORDER BY sequence",
                (executions[0]["id"],),
            )
        ).all()
    names = [c.name for c in events_table.c]
    by_sqlalchemy, by_driver = (dict(zip(names, row, strict=True)) for row in stored)
    _same_but(by_sqlalchemy, by_driver, "sequence")


async def test_node_runs_payloads_and_status_changes_are_stored_as_sqlalchemy_stores_them(
    database: Database,
) -> None:
    owner = await make_workflow(database)
    execution = _execution(owner)
    async with database.transaction() as session:
        await INSERT_EXECUTION.run(session, [execution])
    runs = tuple(
        {
            "id": _id(),
            "execution_id": execution["id"],
            "node_id": node_id,
            "node_name": "Node",
            "created_at": AT,
            "status": "FAILED",
            "attempt": 2,
            "input_items": 3,
            "output_items": None,
            "error": {"message": "no", "details": {"x": [1, 2]}},
            "console": None,
            "source": None,
            "started_at": AT,
            "finished_at": AT + timedelta(milliseconds=5),
        }
        for node_id in ("a", "b")
    )
    await _both(database, recorder._INSERT_NODE_RUNS, runs)
    table: Table = NodeRun.__table__  # type: ignore[attr-defined]
    first, second = [await _stored(database, table, "id", row["id"]) for row in runs]
    _same_but(first, second, "id", "node_id")

    changes = tuple(
        {
            "run_id": run["id"],
            **recorder._node_run_values(
                NodeRunState(
                    run["id"],
                    run["node_id"],
                    "Node",
                    3,
                    NodeRunStatus.SUCCEEDED,
                    started_at=AT,
                    finished_at=AT + timedelta(seconds=1),
                    output_items=4,
                    console=None,
                    source="PINNED",
                )
            ),
        }
        for run in runs
    )
    await _both(database, recorder._UPDATE_NODE_RUN, changes)
    first, second = [await _stored(database, table, "id", row["id"]) for row in runs]
    _same_but(first, second, "id", "node_id")
    assert "SUCCEEDED" in first["status"]

    payloads = tuple(
        {
            "node_run_id": run["id"],
            "execution_id": execution["id"],
            "encoding": "zstd-json",
            "raw_bytes": 7,
            "data": b"\x00\x01binary\xff",
        }
        for run in runs
    )
    await _both(database, recorder._INSERT_PAYLOADS, payloads)
    payload_table = recorder._INSERT_PAYLOADS.statement.table
    first, second = [
        await _stored(database, payload_table, "node_run_id", row["node_run_id"])
        for row in payloads
    ]
    _same_but(first, second, "node_run_id")

    # An execution's status change: the statement the writer builds for it, both ways.
    other = _execution(owner)
    async with database.transaction() as session:
        await INSERT_EXECUTION.run(session, [other])
    change = ExecutionUpdate(
        status=ExecutionStatus.FAILED,
        finished_at=AT,
        error=ErrorInfo("NodeError", "it failed", {"n": [1, "ü"]}, "a", "A"),
        saved_data=SaveData.SUMMARY,
    )
    pair = [recorder._execution_change(row["id"], change) for row in (execution, other)]
    assert pair[0][0] is pair[1][0]
    await _both(database, pair[0][0], (pair[0][1], pair[1][1]))
    table = Execution.__table__  # type: ignore[attr-defined]
    first, second = [await _stored(database, table, "id", row["id"]) for row in (execution, other)]
    _same_but(first, second, "id")
    assert "FAILED" in first["status"]


async def test_a_refused_row_raises_sqlalchemys_integrity_error(database: Database) -> None:
    owner = await make_workflow(database)
    execution = _execution(owner)
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            await INSERT_EXECUTION.run(session, [execution, dict(execution)])


def test_a_list_rendered_at_execution_is_refused_when_compiled(database: Database) -> None:
    # `IN (...)` of a constant list is rendered by SQLAlchemy at each execution, which the
    # driver path skips: such a statement would fail only when run.
    table: Table = Execution.__table__  # type: ignore[attr-defined]
    statement = DriverStatement(
        update(table)
        .where(table.c.id == bindparam("v_id"), table.c.status.in_(["RUNNING", "QUEUED"]))
        .values(status=bindparam("v_status"))
    )
    with pytest.raises(ValueError, match="IN list"):
        statement.compiled(database.engine.dialect)


async def test_a_row_without_a_column_names_it(database: Database) -> None:
    statement = insert_rows(NodeRun.__table__)  # type: ignore[attr-defined]
    async with database.transaction() as session:
        with pytest.raises(KeyError, match=r"lacks .*'node_id'"):
            await statement.run(session, [{"id": "x", "execution_id": "y"}])
