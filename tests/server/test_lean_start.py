"""An embedded `loom serve` imports only what it needs: no arq or Redis (distributed mode),
no Alembic when the database is already migrated, no aiohttp until an HTTP Request node
runs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from engine.node_types import BUILTIN_ENTRY_POINT

# Starts the app as `loom serve` does, on a database migrated by an earlier start, and
# prints which of the heavy packages got imported.
_START = """
import asyncio, sys
from server.settings import load_settings
from storage.migrate import upgrade
from storage import accounts

async def main():
    settings = load_settings()
    database = settings.database()
    await upgrade(database)
    await accounts.bootstrap_admin(database, None)
    await database.dispose()
    from server.app import create_app
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        pass

asyncio.run(main())
print(",".join(m for m in ("arq", "redis", "alembic", "aiohttp") if m in sys.modules))
"""


def _start(data_dir: Path) -> str:
    env = {"LOOM_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", "LOOM_LOG_LEVEL": "warning"}
    done = subprocess.run(
        [sys.executable, "-c", _START],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_embedded_start_imports_no_queue_no_alembic_no_http_client(tmp_path):
    first = _start(tmp_path)  # creates and migrates the database: Alembic is needed
    assert "alembic" in first.split(",")
    assert _start(tmp_path) == ""


def test_the_builtin_entry_point_is_the_one_trusted_without_a_schema_check():
    values = {ep.name: ep.value for ep in entry_points(group="loom.node_types")}
    assert values["builtin"] == BUILTIN_ENTRY_POINT
