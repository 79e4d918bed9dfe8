"""Races between transactions: exactly one of two conflicting writers wins, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlmodel import func, select

from storage import accounts, workflows
from storage.errors import NotFoundError, VersionConflictError
from storage.models import ApiToken, User, WorkflowVersion


@contextmanager
def issued(database, statement_start: str) -> Iterator[asyncio.Event]:
    """An event set once a statement starting with `statement_start` goes to the database."""
    sent = asyncio.Event()

    def watch(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(statement_start):
            sent.set()

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", watch)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", watch)


async def _update(database, workflow_id, workspace_ids, expected_version, name):
    async with database.transaction() as session:
        return await workflows.update_draft(
            session, workflow_id, workspace_ids, expected_version, workflows.DraftChange(name=name)
        )


async def _stored_version(database, workflow_id, workspace_ids):
    async with database.session() as session:
        row = await workflows.get_workflow(session, workflow_id, workspace_ids)
    assert row is not None
    return row


async def test_second_update_from_the_same_version_conflicts(database, stored_workflow):
    row, workspace_ids = await stored_workflow()
    async with database.session() as first:
        async with first.begin():
            won = await workflows.update_draft(
                first, row.id, workspace_ids, 1, workflows.DraftChange(name="first")
            )
            assert won.version == 2
            # The second writer sends its UPDATE before the first commits; it waits for the
            # first (row lock on PostgreSQL, the write lock on SQLite), then finds the
            # version moved on.
            with issued(database, "UPDATE WORKFLOWS") as sent:
                second = asyncio.create_task(_update(database, row.id, workspace_ids, 1, "second"))
                await asyncio.wait_for(sent.wait(), timeout=10)
        with pytest.raises(VersionConflictError) as conflict:
            await second
    assert (conflict.value.expected_version, conflict.value.current_version) == (1, 2)
    stored = await _stored_version(database, row.id, workspace_ids)
    assert (stored.version, stored.name) == (2, "first")


@pytest.mark.parametrize("writers", [2, 6])
async def test_concurrent_updates_have_exactly_one_winner(database, stored_workflow, writers):
    row, workspace_ids = await stored_workflow()
    results = await asyncio.gather(
        *(_update(database, row.id, workspace_ids, 1, f"w{i}") for i in range(writers)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, VersionConflictError) for r in losers), losers
    assert all(r.current_version == 2 for r in losers)
    stored = await _stored_version(database, row.id, workspace_ids)
    assert (stored.version, stored.name) == (2, winners[0].name)


async def test_updates_in_sequence_each_bump_the_version(database, stored_workflow):
    row, workspace_ids = await stored_workflow()
    for expected in range(1, 6):
        updated = await _update(database, row.id, workspace_ids, expected, f"v{expected + 1}")
        assert updated.version == expected + 1
    assert updated.updated_at >= row.updated_at


async def test_update_of_another_workspace_is_not_found(database, stored_workflow):
    row, _ = await stored_workflow()
    _, other_workspaces = await stored_workflow()
    with pytest.raises(NotFoundError):
        await _update(database, row.id, other_workspaces, 1, "stolen")
    stored = await _stored_version(database, row.id, (row.workspace_id,))
    assert (stored.version, stored.name) == (1, "wf")


async def test_a_failed_transaction_leaves_the_draft_alone(database, stored_workflow):
    row, workspace_ids = await stored_workflow()
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await workflows.update_draft(
                session, row.id, workspace_ids, 1, workflows.DraftChange(name="doomed")
            )
            raise RuntimeError("after the update, before the commit")
    stored = await _stored_version(database, row.id, workspace_ids)
    assert (stored.version, stored.name) == (1, "wf")


# Snapshots


async def _snapshot(database, workflow_id, workspace_ids):
    async with database.transaction() as session:
        row = await workflows.require_workflow(session, workflow_id, workspace_ids)
        return await workflows.ensure_snapshot(session, row, None)


async def _snapshot_count(database, workflow_id):
    async with database.session() as session:
        query = select(func.count()).where(WorkflowVersion.workflow_id == workflow_id)
        return (await session.exec(query)).one()


async def test_ensure_snapshot_is_idempotent(database, stored_workflow):
    row, workspace_ids = await stored_workflow()
    first = await _snapshot(database, row.id, workspace_ids)
    second = await _snapshot(database, row.id, workspace_ids)
    assert first.id == second.id
    assert (first.version, first.name) == (1, "wf")
    assert await _snapshot_count(database, row.id) == 1


@pytest.mark.parametrize("callers", [2, 5])
async def test_racing_snapshots_yield_one_row(database, stored_workflow, callers):
    row, workspace_ids = await stored_workflow()
    snapshots = await asyncio.gather(
        *(_snapshot(database, row.id, workspace_ids) for _ in range(callers))
    )
    assert len({snapshot.id for snapshot in snapshots}) == 1
    assert await _snapshot_count(database, row.id) == 1


async def test_snapshot_raced_by_an_uncommitted_one_yields_one_row(database, stored_workflow):
    row, workspace_ids = await stored_workflow()
    async with database.session() as first:
        async with first.begin():
            # Hold the write lock first, so that the snapshot stays uncommitted on SQLite too.
            await database.lock(first, "test.snapshot-race")
            current = await workflows.require_workflow(first, row.id, workspace_ids)
            mine = await workflows.ensure_snapshot(first, current, None)
            # The rival cannot see the uncommitted snapshot, so it inserts its own, and
            # waits on the unique key (PostgreSQL) or the write lock (SQLite).
            with issued(database, "INSERT INTO WORKFLOW_VERSIONS") as sent:
                rival = asyncio.create_task(_snapshot(database, row.id, workspace_ids))
                await asyncio.wait_for(sent.wait(), timeout=10)
        theirs = await rival
    assert theirs.id == mine.id
    assert await _snapshot_count(database, row.id) == 1


async def test_snapshots_of_different_versions_are_separate(database, stored_workflow):
    row, workspace_ids = await stored_workflow()
    first = await _snapshot(database, row.id, workspace_ids)
    await _update(database, row.id, workspace_ids, 1, "renamed")
    second = await _snapshot(database, row.id, workspace_ids)
    assert (first.version, second.version) == (1, 2)
    assert (first.name, second.name) == ("wf", "renamed")
    assert await _snapshot_count(database, row.id) == 2


# Bootstrapping the admin


async def _users_named(database, name):
    async with database.session() as session:
        return (await session.exec(select(User).where(User.name == name))).all()


async def _token_rows(database, user_id):
    async with database.session() as session:
        return (await session.exec(select(ApiToken).where(ApiToken.user_id == user_id))).all()


async def _principal(database, token):
    async with database.session() as session:
        return await accounts.principal_for_token(session, token)


async def test_bootstrap_without_a_token_creates_one_admin_once(database):
    token = await accounts.bootstrap_admin(database, None)
    assert token is not None
    assert await accounts.bootstrap_admin(database, None) is None
    (admin,) = await _users_named(database, "admin")
    assert admin.role == "admin"
    principal = await _principal(database, token)
    assert principal is not None and principal.is_admin
    assert len(await _token_rows(database, admin.id)) == 1


async def test_bootstrap_without_a_token_leaves_an_existing_installation_alone(database):
    async with database.transaction() as session:
        await accounts.create_user(session, "someone")
    assert await accounts.bootstrap_admin(database, None) is None
    assert await _users_named(database, "admin") == []


async def test_bootstrap_with_a_token_is_an_upsert(database):
    secret = "loom_fixed-admin-token-for-tests"
    for _ in range(3):
        assert await accounts.bootstrap_admin(database, secret) is None
    (admin,) = await _users_named(database, "admin")
    assert len(await _token_rows(database, admin.id)) == 1
    principal = await _principal(database, secret)
    assert principal is not None and principal.user_id == admin.id and principal.is_admin
    # A new LOOM_ADMIN_TOKEN is added to the same admin; the old one keeps working.
    await accounts.bootstrap_admin(database, "loom_rotated")
    assert len(await _token_rows(database, admin.id)) == 2
    assert await _principal(database, "loom_rotated") is not None


async def test_bootstrap_with_a_token_promotes_a_member_named_admin(database):
    async with database.transaction() as session:
        await accounts.create_user(session, "admin", accounts.ROLE_MEMBER)
    await accounts.bootstrap_admin(database, "loom_promote")
    (admin,) = await _users_named(database, "admin")
    assert admin.role == "admin"


@pytest.mark.parametrize("token", [None, "loom_shared-by-replicas"])
async def test_replicas_starting_together_create_one_admin(database, token):
    results = await asyncio.gather(*(accounts.bootstrap_admin(database, token) for _ in range(5)))
    (admin,) = await _users_named(database, "admin")
    tokens = await _token_rows(database, admin.id)
    assert len(tokens) == 1
    if token is None:
        printed = [result for result in results if result is not None]
        assert len(printed) == 1
        assert await _principal(database, printed[0]) is not None
    else:
        assert results == [None] * 5
        assert await _principal(database, token) is not None
    async with database.session() as session:
        assert (await session.exec(select(func.count()).select_from(User))).one() == 1
