"""Webhook idempotency keys: the run a key started and the answer its caller got.

A repeat of a webhook request with the same `Idempotency-Key` is answered from here (the
execution id, or the answer sent the first time) for `LOOM_IDEMPOTENCY_KEY_TTL_HOURS` after
the key's first use, even once the execution is gone: a run that kept none of its data is
deleted a minute after it ends, retention deletes others, and senders retry for hours. The
unique key on executions still makes one run per key while the execution exists; this
table is what repeats read. Expired keys are deleted by the pruner (storage/retention.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from storage.db import Database, run_core
from storage.models import WebhookIdempotencyKey
from storage.types import utcnow

# The largest answer body kept for repeats; a larger one is remembered as too large.
MAX_STORED_ANSWER_BYTES = 1024 * 1024

_TABLE = WebhookIdempotencyKey.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What the first caller got: `body` None when it was over `MAX_STORED_ANSWER_BYTES`."""

    status_code: int
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class KnownKey:
    """A key in use: its run, and the answer sent (None while none was sent)."""

    execution_id: str
    created_at: datetime
    answer: StoredAnswer | None


def _cutoff(ttl_hours: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(hours=ttl_hours)


async def find(database: Database, workflow_id: str, key: str, ttl_hours: float) -> KnownKey | None:
    """The key's run and answer, unless it is unknown or expired."""
    query = select(WebhookIdempotencyKey).where(
        col(WebhookIdempotencyKey.workflow_id) == workflow_id,
        col(WebhookIdempotencyKey.key) == key,
        col(WebhookIdempotencyKey.created_at) > _cutoff(ttl_hours),
    )
    async with database.session() as session:
        row = (await session.exec(query)).first()
    if row is None:
        return None
    answer = (
        None
        if row.status_code is None
        else StoredAnswer(row.status_code, dict(row.headers or {}), row.body)
    )
    return KnownKey(row.execution_id, row.created_at, answer)


async def remember(
    database: Database,
    workflow_id: str,
    key: str,
    execution_id: str,
    ttl_hours: float,
    replacing: str | None = None,
) -> None:
    """Record that the key started (or found) `execution_id`: a new row, or one that
    replaces an expired row or the row of `replacing` (a run pruned before it answered);
    another live row for the key stays as it is."""
    now = utcnow()
    insert = sqlite_insert if database.is_sqlite else pg_insert
    statement = insert(_TABLE).values(
        workflow_id=workflow_id, key=key, execution_id=execution_id, created_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["workflow_id", "key"],
        set_={
            "execution_id": execution_id,
            "created_at": now,
            "status_code": None,
            "headers": None,
            "body": None,
        },
        where=or_(
            _TABLE.c.created_at <= _cutoff(ttl_hours, now),
            _TABLE.c.execution_id == (replacing or execution_id),
        ),
    )
    async with database.transaction() as session:
        await run_core(session, statement)


async def record_answer(
    database: Database,
    workflow_id: str,
    key: str,
    execution_id: str,
    status_code: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Keep the answer sent for the key's run (the first one sent, if several were)."""
    kept = body if len(body) <= MAX_STORED_ANSWER_BYTES else None
    statement = (
        update(_TABLE)
        .where(
            and_(
                _TABLE.c.workflow_id == workflow_id,
                _TABLE.c.key == key,
                _TABLE.c.execution_id == execution_id,
                _TABLE.c.status_code.is_(None),
            )
        )
        .values(status_code=status_code, headers=headers, body=kept)
    )
    async with database.transaction() as session:
        await run_core(session, statement)
