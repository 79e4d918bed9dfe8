"""Migrations apply on both databases, and the models describe exactly what they create."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Integer, MetaData, String, inspect, text
from sqlmodel import SQLModel

from storage.db import Database
from storage.migrate import alembic_config, upgrade

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
