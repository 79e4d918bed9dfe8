"""Execution events: every state transition, in order, with a gap-free sequence.

The executor emits `Record`s to a `Recorder`: the event, and what it changes (a node run, its
output payload, the execution row). The recorder stores them together (the event log is the
record) and publishes only what it has committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from engine.retention import SaveData
from engine.states import ExecutionStatus, NodeRunStatus

if TYPE_CHECKING:
    from engine.nodes.base import PortItems
    from engine.outputs import EncodedOutputs


class EventType(StrEnum):
    EXECUTION_QUEUED = "EXECUTION_QUEUED"
    EXECUTION_STARTED = "EXECUTION_STARTED"
    NODE_STARTED = "NODE_STARTED"
    NODE_RETRYING = "NODE_RETRYING"
    NODE_SUCCEEDED = "NODE_SUCCEEDED"
    NODE_FAILED = "NODE_FAILED"
    NODE_SKIPPED = "NODE_SKIPPED"
    NODE_CANCELLED = "NODE_CANCELLED"
    EXECUTION_WAITING = "EXECUTION_WAITING"
    EXECUTION_RESUMED = "EXECUTION_RESUMED"
    EXECUTION_FINISHED = "EXECUTION_FINISHED"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as stored and shown: a stable type, a message, optional details, and for
    an execution that a node's failure ended, that node."""

    type: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    node_id: str | None = None
    node_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "message": self.message, "details": self.details}
        if self.node_id is not None:
            data["nodeId"] = self.node_id
            data["nodeName"] = self.node_name
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(
            type=data["type"],
            message=data["message"],
            details=data.get("details") or {},
            node_id=data.get("nodeId"),
            node_name=data.get("nodeName"),
        )


@dataclass(frozen=True, slots=True)
class ConsoleOutput:
    """What a node printed (the Code node's `console.log`), capped; `truncated` says that
    lines or characters past the cap were left out."""

    lines: tuple[str, ...] = ()
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"lines": list(self.lines), "truncated": self.truncated}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsoleOutput:
        return cls(tuple(data.get("lines") or ()), bool(data.get("truncated")))


@dataclass(slots=True)
class NodeRunState:
    """One attempt of one node, as the executor tracks it and the recorder stores it."""

    id: str
    node_id: str
    node_name: str
    attempt: int
    status: NodeRunStatus = NodeRunStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    input_items: int | None = None
    output_items: int | None = None
    error: ErrorInfo | None = None
    # What the attempt printed, for nodes that print (the Code node); None otherwise.
    console: ConsoleOutput | None = None
    # Where its output came from when the node did not run (`PINNED`); None when it ran.
    source: str | None = None
    # Already stored by an earlier run (a parked attempt that goes on): updated, not inserted.
    stored: bool = False

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


@dataclass(slots=True)
class ExecutionUpdate:
    """New values for the execution row, written with the event that causes them."""

    status: ExecutionStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorInfo | None = None
    output: Any = None
    has_output: bool = False
    # The port of the leaf node whose items `output` is.
    output_port: str | None = None
    # Where `output` is recorded already: the node run and port whose items it is. The
    # recorder then stores a reference instead of the items again.
    output_from: tuple[str, str] | None = None
    # When a WAITING execution is due to resume, and its parked attempts by node id.
    resume_at: datetime | None = None
    parked: dict[str, Any] | None = None
    # What an ended execution keeps of its data (engine/retention.py): the recorder stores
    # the end accordingly, in the same write.
    saved_data: SaveData = SaveData.ALL


@dataclass(slots=True)
class Event:
    """One transition. `sequence` is 1, 2, 3, ... per execution, without gaps."""

    execution_id: str
    sequence: int
    type: EventType
    at: datetime
    node_id: str | None = None
    node_name: str | None = None
    attempt: int | None = None
    status: str | None = None
    duration_ms: float | None = None
    input_items: int | None = None
    output_items: int | None = None
    error: ErrorInfo | None = None
    preview: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "executionId": self.execution_id,
            "sequence": self.sequence,
            "type": self.type.value,
            "at": self.at.isoformat(),
            "nodeId": self.node_id,
            "nodeName": self.node_name,
            "attempt": self.attempt,
            "status": self.status,
            "durationMs": self.duration_ms,
            "inputItems": self.input_items,
            "outputItems": self.output_items,
            "error": None if self.error is None else self.error.to_json(),
            "preview": self.preview,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            execution_id=data["executionId"],
            sequence=data["sequence"],
            type=EventType(data["type"]),
            at=datetime.fromisoformat(data["at"]),
            node_id=data.get("nodeId"),
            node_name=data.get("nodeName"),
            attempt=data.get("attempt"),
            status=data.get("status"),
            duration_ms=data.get("durationMs"),
            input_items=data.get("inputItems"),
            output_items=data.get("outputItems"),
            error=None if data.get("error") is None else ErrorInfo.from_json(data["error"]),
            preview=data.get("preview"),
        )


@dataclass(slots=True)
class Record:
    """An event and the writes that go with it, stored in one transaction."""

    event: Event
    node_run: NodeRunState | None = None
    # Full output of a node run (succeeded, or failed with an error item), encoded.
    payload: EncodedOutputs | None = None
    execution: ExecutionUpdate | None = None
    # Instead of a payload: the node run's output is the execution input, as the one item on
    # this port (a trigger passing it on), stored as a reference to the input.
    input_port: str | None = None
    # Instead of a payload: the node run's output is that of this earlier node run (reused
    # by a run to a node), copied where it is stored; `reused` is that output, encoded and
    # stored instead should the earlier row be gone by then (retention, a deletion).
    payload_from: str | None = None
    reused: PortItems | None = None


class Recorder(Protocol):
    """Where the executor sends its records. `emit` never blocks and takes the record over
    (a recorder may let go of its payload once it holds it another way); `flush` waits for commit;
    `throttle` waits while too many payload bytes are waiting to be stored, so that a run
    producing large outputs cannot pile them up in memory."""

    def emit(self, record: Record) -> None: ...

    async def flush(self) -> None: ...

    async def throttle(self) -> None: ...
