"""Migrations apply on both databases, and the models describe exactly what they create."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Column, Connection, Integer, MetaData, String, Table, inspect, text
from sqlmodel import SQLModel

from storage.db import Database
from storage.migrate import alembic_config, current_revision, head_revision, upgrade

# Every table the models declare, and Alembic's bookkeeping.
TABLES = {table.name for table in SQLModel.metadata.sorted_tables} | {"alembic_version"}


def _diff(connection: Connection, metadata: MetaData) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _model_diff(database: Database, metadata: MetaData = SQLModel.metadata) -> list[object]:
    async with database.engine.connect() as connection:
        return await connection.run_sync(_diff, metadata)


async def _tables(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def _revision(database: Database) -> str | None:
    async with database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_models_match_the_migrated_schema(database):
    assert await _model_diff(database) == []


async def test_the_comparison_notices_a_drift(database):
    drifted = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["workflows"].append_column(Column("extra", Integer, nullable=True))
    drifted.tables["users"].c.name.type = String(65)
    diff = repr(await _model_diff(database, drifted))
    assert "'add_column', None, 'workflows'" in diff
    assert "'modify_type', None, 'users', 'name'" in diff


async def test_migrations_apply_to_an_empty_database(empty_database):
    assert await _tables(empty_database) == set()
    await upgrade(empty_database)
    assert await _tables(empty_database) == TABLES
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await _revision(empty_database) == head
    assert await _model_diff(empty_database) == []
    async with empty_database.engine.connect() as connection:
        anchor = (await connection.execute(text("SELECT id, touched FROM lock_anchor"))).all()
    assert [tuple(row) for row in anchor] == [(1, 0)]


async def test_upgrade_is_idempotent(empty_database):
    await upgrade(empty_database)
    await upgrade(empty_database)
    assert await _model_diff(empty_database) == []


async def test_downgrade_to_base_and_back(empty_database):
    await upgrade(empty_database)
    async with empty_database.engine.begin() as connection:
        await connection.run_sync(_downgrade, "base")
    assert await _tables(empty_database) == {"alembic_version"}
    assert await _revision(empty_database) is None
    await upgrade(empty_database)
    assert await _tables(empty_database) == TABLES
    assert await _model_diff(empty_database) == []


def test_one_head():
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def _fill(connection: Connection, table_name: str, **given: object) -> None:
    """Insert a row into a table as it is at the current revision: `given` values, and a
    plain value for every other required column."""
    table = Table(table_name, MetaData(), autoload_with=connection)
    values: dict[str, object] = {}
    for column in table.columns:
        if column.name in given:
            values[column.name] = given[column.name]
        elif not column.nullable and column.server_default is None:
            python_type = column.type.python_type if not isinstance(column.type, JSON) else dict
            values[column.name] = {
                int: 1,
                bool: False,
                dict: {},
                list: [],
                datetime: datetime(2026, 1, 1, tzinfo=UTC),
            }.get(python_type, "x")
    connection.execute(table.insert().values(**values))


def _counts(connection: Connection) -> dict[str, int]:
    return {
        name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
        for name in ("executions", "node_runs", "execution_events")
    }


async def test_the_sub_workflow_migration_keeps_every_execution(empty_database):
    """0008 adds columns to `executions`; on SQLite, rebuilding the table instead (batch
    mode) would cascade the old table's drop to every node run and event."""
    await upgrade(empty_database, "0007")

    def populate(connection: Connection) -> dict[str, int]:
        _fill(connection, "workspaces", id="ws")
        _fill(connection, "workflows", id="wf", workspace_id="ws", created_by=None)
        _fill(connection, "workflow_versions", id="v1", workflow_id="wf", created_by=None)
        for execution_id, retry_of in (("e1", None), ("e2", "e1")):
            _fill(
                connection,
                "executions",
                id=execution_id,
                workspace_id="ws",
                workflow_id="wf",
                workflow_version_id="v1",
                retry_of=retry_of,
                created_by=None,
            )
        _fill(connection, "node_runs", id="r1", execution_id="e1")
        _fill(connection, "execution_events", execution_id="e1", sequence=1)
        return _counts(connection)

    async with empty_database.engine.begin() as connection:
        before = await connection.run_sync(populate)
    await upgrade(empty_database)
    async with empty_database.engine.connect() as connection:
        after = await connection.run_sync(_counts)
        retry_of = (
            await connection.execute(text("SELECT retry_of FROM executions WHERE id = 'e2'"))
        ).scalar_one()
    assert before == after == {"executions": 2, "node_runs": 1, "execution_events": 1}
    assert retry_of == "e1"
    assert await _model_diff(empty_database) == []


def test_head_revision_read_from_the_files_is_alembics():
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_current_revision_without_alembic(empty_database):
    assert await current_revision(empty_database) is None  # no alembic_version table
    await upgrade(empty_database)
    assert await current_revision(empty_database) == head_revision()
    async with empty_database.engine.begin() as connection:
        await connection.run_sync(_downgrade, "0007")
    assert await current_revision(empty_database) == "0007"
    await upgrade(empty_database)  # behind the head: migrated, not taken as up to date
    assert await _revision(empty_database) == head_revision()
    assert await _model_diff(empty_database) == []


async def test_nodes_saved_before_versions_were_written_get_their_types_latest(empty_database):
    """0010: a node without `typeVersion` ran its type's latest at the time, version 1 for
    every built-in (Set's version 2 came with 0010); that version is written down in drafts
    and published snapshots, and a node of a type not installed is left alone."""
    await upgrade(empty_database, "0009")
    nodes = [
        {"id": "a", "name": "A", "type": "manual_trigger"},
        {"id": "b", "name": "B", "type": "set", "typeVersion": None},  # 1, not 2
        {"id": "c", "name": "C", "type": "no_such.type"},
        {"id": "d", "name": "D", "type": "limit", "typeVersion": 1},
    ]

    def populate(connection: Connection) -> None:
        _fill(connection, "workspaces", id="ws")
        _fill(connection, "workflows", id="wf", workspace_id="ws", created_by=None, nodes=nodes)
        _fill(
            connection,
            "workflow_versions",
            id="v1",
            workflow_id="wf",
            created_by=None,
            nodes=nodes,
        )

    async with empty_database.engine.begin() as connection:
        await connection.run_sync(populate)
    await upgrade(empty_database)
    async with empty_database.engine.connect() as connection:
        for table in ("workflows", "workflow_versions"):
            stored = (await connection.execute(text(f"SELECT nodes FROM {table}"))).scalar_one()
            if isinstance(stored, str):  # SQLite hands JSON back as text here
                stored = json.loads(stored)
            assert [node.get("typeVersion") for node in stored] == [1, 1, None, 1], table


async def test_children_created_twice_keep_the_oldest_in_the_call(empty_database):
    """0016 makes (parent_run_id, parent_batch) unique: of children created twice for one call
    and batch before it, the oldest keeps its link to the attempt, the later one loses it and
    stays a child of its parent; nothing is deleted."""
    await upgrade(empty_database, "0013")

    def populate(connection: Connection) -> dict[str, int]:
        _fill(connection, "workspaces", id="ws")
        _fill(connection, "workflows", id="wf", workspace_id="ws", created_by=None)
        _fill(connection, "workflow_versions", id="v1", workflow_id="wf", created_by=None)
        _fill(
            connection,
            "executions",
            id="parent",
            workspace_id="ws",
            workflow_id="wf",
            workflow_version_id="v1",
            created_by=None,
        )
        for child, minute in (("c-late", 2), ("c-first", 1), ("c-other", 3)):
            _fill(
                connection,
                "executions",
                id=child,
                workspace_id="ws",
                workflow_id="wf",
                workflow_version_id="v1",
                created_by=None,
                parent_execution_id="parent",
                parent_run_id="run",
                parent_batch=1 if child == "c-other" else 0,
                created_at=datetime(2026, 1, 1, 0, minute, tzinfo=UTC),
            )
        _fill(connection, "execution_events", execution_id="c-late", sequence=1)
        return _counts(connection)

    async with empty_database.engine.begin() as connection:
        before = await connection.run_sync(populate)
    await upgrade(empty_database)
    async with empty_database.engine.connect() as connection:
        after = await connection.run_sync(_counts)
        links = dict(
            (
                await connection.execute(
                    text(
                        "SELECT id, parent_run_id FROM executions "
                        "WHERE parent_execution_id = 'parent'"
                    )
                )
            ).all()
        )
    assert before == after == {"executions": 4, "node_runs": 0, "execution_events": 1}
    assert links == {"c-first": "run", "c-late": None, "c-other": "run"}
    assert await _model_diff(empty_database) == []
    async with empty_database.engine.begin() as connection:
        await connection.run_sync(_downgrade, "0013")
    await upgrade(empty_database)
