"""Execution event rows: the one statement that stores them, from `Event`s.

Every event row is written by the group-commit writer (storage/recorder.py): with its rounds,
or in one of its transactions (`GroupCommitWriter.transaction`: a creation, a claim, a
cancellation), which publishes the events once committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.events import Event
from storage.db import run_core
from storage.models import ExecutionEventRow

_EVENTS: Table = ExecutionEventRow.__table__  # type: ignore[attr-defined]
INSERT_EVENTS = insert(_EVENTS)


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
        await run_core(session, INSERT_EVENTS, [event_row(event) for event in events])
