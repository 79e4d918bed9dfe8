"""A failed statement's error (which the recorder and the API log) names its SQL, never the
values bound to it: they are item data and node parameters, API keys among them."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from storage.db import Database

SECRET = "sk-hidden-parameter-4f1c9e"


async def test_a_database_error_does_not_print_the_values_bound(database: Database) -> None:
    with pytest.raises(DBAPIError) as failed:
        async with database.transaction() as session:
            connection = await session.connection()
            await connection.execute(
                text("INSERT INTO no_such_table (secret) VALUES (:secret)"), {"secret": SECRET}
            )
    assert "no_such_table" in str(failed.value)
    assert SECRET not in str(failed.value)
    assert SECRET not in repr(failed.value)
