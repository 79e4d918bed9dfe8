"""What the group-commit writer stores of executions that end keeping less than all of their
data (engine/retention.py), in the write that records their end.

- `summary`: the round writes no payload and no preview for it, and the payloads and
  previews that earlier rounds wrote are deleted: what stays are the execution row, its node
  runs and its events (statuses, timings, item counts, errors), and `saved_data`.
- `none`: stored like `summary`, with `saved_data` `none`: the pruner deletes the row a
  short grace period after its end (`LOOM_PRUNE_NONE_AFTER_S`, storage/retention.py), so
  that whoever reads the end back meanwhile (a cancel, a webhook's repeat, a subscriber that
  attaches late) still finds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam, delete, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.events import EventType, Record
from engine.retention import SaveData
from storage.db import run_core
from storage.models import ExecutionEventRow, ExecutionPayload, NodeRunPayload

_EVENTS: Table = ExecutionEventRow.__table__  # type: ignore[attr-defined]
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_DELETE_PAYLOADS = [
    delete(table).where(table.c.execution_id.in_(_IDS))
    for table in (NodeRunPayload.__table__, ExecutionPayload.__table__)  # type: ignore[attr-defined]
]
# Only these events carry a preview of an output.
_DROP_PREVIEWS = (
    update(_EVENTS)
    .where(
        _EVENTS.c.execution_id.in_(_IDS),
        _EVENTS.c.type == EventType.NODE_SUCCEEDED.value,
    )
    .values(preview=None)
)


@dataclass(slots=True)
class Endings:
    """The executions of a batch that end keeping less than all of their data."""

    summarized: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, batch: Iterable[Record]) -> Endings:
        endings = cls()
        for record in batch:
            change = record.execution
            if change is None or not change.status.is_terminal:
                continue
            if change.saved_data is not SaveData.ALL:
                endings.summarized.add(record.event.execution_id)
        return endings

    def __bool__(self) -> bool:
        return bool(self.summarized)

    def keeps_data(self, execution_id: str) -> bool:
        return execution_id not in self.summarized

    def event_row(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["preview"] is not None and row["execution_id"] in self.summarized:
            row["preview"] = None
        return row

    async def apply(self, session: AsyncSession) -> None:
        """Delete what earlier rounds stored of these executions that they do not keep."""
        if self.summarized:
            ids = {"ids": sorted(self.summarized)}
            for statement in _DELETE_PAYLOADS:
                await run_core(session, statement, ids)
            await run_core(session, _DROP_PREVIEWS, ids)
