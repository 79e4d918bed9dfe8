"""Storage fixtures: an empty database (no tables) per backend, and stored workflows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text

from storage import accounts, workflows
from storage.db import Database
from storage.models import Workflow
from tests.conftest import PG_URL


@pytest.fixture
async def empty_database(
    backend: str, migrated: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """A database of the backend without any table. (`migrated` skips when PostgreSQL is away.)"""
    if backend == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('empty') / 'loom.db'}")
        yield database
        await database.dispose()
        return
    schema = f"loom_empty_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    async with admin.engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(PG_URL, pg_search_path=schema)
    try:
        yield database
    finally:
        await database.dispose()
        async with admin.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


StoredWorkflow = Callable[..., Awaitable[tuple[Workflow, tuple[str, ...]]]]


@pytest.fixture
def stored_workflow(database: Database) -> StoredWorkflow:
    """Stores a user and a workflow of theirs; returns the workflow and the workspace ids."""

    async def make(name: str = "wf") -> tuple[Workflow, tuple[str, ...]]:
        async with database.transaction() as session:
            user = await accounts.create_user(session, f"owner-{uuid.uuid4().hex[:8]}")
            principal = await accounts.principal_for_user(session, user)
            row = Workflow(workspace_id=user.personal_workspace_id, name=name, created_by=user.id)
            await workflows.create_workflow(session, row)
        return row, principal.workspace_ids

    return make
