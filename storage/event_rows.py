"""Execution event rows: the one statement that stores them, from `Event`s.

Every event row is written by the group-commit writer (storage/recorder.py): with its rounds,
or in one of its transactions (`GroupCommitWriter.transaction`: a creation, a claim, a
cancellation), which publishes the events once committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.events import Event
from storage.driver_sql import insert_rows
from storage.models import ExecutionEventRow

_EVENTS: Table = ExecutionEventRow.__table__  # type: ignore[attr-defined]
# Every column, compiled once: the writer's hottest statement (storage/driver_sql.py).
INSERT_EVENTS = insert_rows(_EVENTS)


def event_row(event: Event) -> dict[str, Any]:
    return {
        "execution_id": event.execution_id,
        "sequence": event.sequence,
        "type": event.type.value,
        "at": event.at,
        "node_id": event.node_id,
        "node_name": event.node_name,
        "attempt": event.attempt,
        "status": event.status,
        "duration_ms": event.duration_ms,
        "input_items": event.input_items,
        "output_items": event.output_items,
        "error": None if event.error is None else event.error.to_json(),
        "preview": event.preview,
    }


async def insert_events(session: AsyncSession, events: Sequence[Event]) -> None:
    """Store the events' rows (one executemany)."""
    if events:
        await INSERT_EVENTS.run(session, [event_row(event) for event in events])
