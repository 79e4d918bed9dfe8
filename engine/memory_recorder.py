"""A recorder that keeps records in memory: for tests and runs without a database."""

from __future__ import annotations

from engine.events import Event, Record


class MemoryRecorder:
    """Stores every record, in emission order; `flush` has nothing to wait for."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def emit(self, record: Record) -> None:
        self.records.append(record)

    async def flush(self) -> None:
        return None

    async def throttle(self) -> None:
        return None

    def events(self, execution_id: str | None = None) -> list[Event]:
        return [
            record.event
            for record in self.records
            if execution_id is None or record.event.execution_id == execution_id
        ]
