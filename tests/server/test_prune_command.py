"""`loom executions prune [--dry-run] [--vacuum]` as a real process, and the pruning that
every process that schedules does in the background."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from server.app import create_app
from server.settings import Settings
from storage.db import Database
from storage.migrate import upgrade
from storage.retention import PruneRecord, last_prune
from tests.polling import until
from tests.server.loom_process import run_loom
from tests.storage.execution_rows import PER_EXECUTION, insert_executions, make_workflow


async def _database_with(path: Path, count: int) -> None:
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(database)
        await insert_executions(database, await make_workflow(database), count)
    finally:
        await database.dispose()


def test_prune_says_what_it_would_delete_then_deletes_it(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    asyncio.run(_database_with(tmp_path / "data" / "loom.db", 12))
    limits = {"LOOM_EXECUTIONS_MAX_COUNT": "2"}
    dry = run_loom("executions", "prune", "--dry-run", cwd=tmp_path, **limits)
    assert dry.code == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("would delete 10 executions in ")
    assert sorted(lines[1:]) == sorted(f"  {name}: {10 * n}" for name, n in PER_EXECUTION.items())
    done = run_loom("executions", "prune", "--vacuum", cwd=tmp_path, **limits)
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("deleted 10 executions in ")
    again = run_loom("executions", "prune", cwd=tmp_path, **limits)
    assert again.stdout.startswith("deleted 0 executions in "), again.stdout


def test_prune_refuses_a_bad_setting_naming_it(tmp_path: Path) -> None:
    ran = run_loom("executions", "prune", cwd=tmp_path, LOOM_EXECUTIONS_MAX_COUNT="0")
    assert ran.code == 1
    assert "LOOM_EXECUTIONS_MAX_COUNT" in ran.stderr and "Traceback" not in ran.stderr


async def test_a_serving_process_prunes_in_the_background(
    database: Database, registry: Any
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        secret_key="test-secret-key-for-credentials",
        executions_max_count=3,
        prune_interval_s=0.1,
    )
    await insert_executions(database, await make_workflow(database), 8)
    app = create_app(settings, database=database, registry=registry)

    async def pruned() -> PruneRecord | None:
        async with database.session() as session:
            return await last_prune(session)

    async with app.router.lifespan_context(app):
        record = await until(pruned, what="a prune in the background")
    assert record.executions_deleted == 5
