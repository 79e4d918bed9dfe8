"""Apply Alembic migrations from code (`loom db upgrade`, `loom serve` start, tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from storage.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Migrations are numbered: each file's name starts with its revision ("0009_...").
_REVISION_FILE = re.compile(r"(\d{4})_\w+\.py")


def head_revision() -> str:
    """The newest migration's revision, read from the files' names: a process whose
    database is already there starts without importing Alembic (tests hold this to
    Alembic's own head)."""
    revisions = [
        match.group(1)
        for path in (MIGRATIONS_DIR / "versions").iterdir()
        if (match := _REVISION_FILE.fullmatch(path.name))
    ]
    return max(revisions)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration pointing at Loom's migrations, without any ini file."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


# pg_advisory_xact_lock key: API processes and workers starting together migrate one at a time.
_MIGRATION_LOCK = 0x6C6F6F6D  # "loom"


async def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (the latest by default).

    On SQLite, foreign keys are off while migrations run, as Alembic's batch mode needs: it
    rebuilds a table by copying it and dropping the old one, and with foreign keys on, that
    drop deletes (ON DELETE CASCADE) or clears (SET NULL) every row that refers to it. The
    references are checked before the migration commits."""
    wanted = head_revision() if revision == "head" else revision
    if await current_revision(database) == wanted:
        return  # the common start: nothing to migrate, and Alembic stays unimported
    async with database.engine.connect() as connection:
        if database.is_sqlite:
            # Outside any transaction (the pragma does nothing inside one).
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()
        try:
            async with connection.begin():
                if not database.is_sqlite:
                    await connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                await connection.run_sync(_upgrade, revision)
                if database.is_sqlite:
                    broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"the migration left broken references: {broken[:5]}")
        finally:
            if database.is_sqlite:
                await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                await connection.commit()


async def current_revision(database: Database) -> str | None:
    """The schema's migration revision; None for a database Loom never migrated."""
    try:
        async with database.engine.connect() as connection:
            rows = (
                await connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            ).all()
    except DBAPIError:  # no such table
        return None
    return rows[0][0] if len(rows) == 1 else None
