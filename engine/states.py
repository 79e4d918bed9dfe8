"""The state machines of executions and node runs. Every status write goes through them.

execution:  QUEUED -> RUNNING -> (WAITING <-> RUNNING) -> SUCCEEDED | FAILED
            CANCELLED from any non-terminal state
node run:   PENDING -> RUNNING -> SUCCEEDED | FAILED
            PENDING -> SKIPPED;  CANCELLED from PENDING or RUNNING
"""

from __future__ import annotations

from enum import StrEnum

from engine.errors import EngineError


class ExecutionStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_EXECUTION_STATUSES


class NodeRunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_NODE_STATUSES


TERMINAL_EXECUTION_STATUSES = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
TERMINAL_NODE_STATUSES = frozenset(
    {NodeRunStatus.SUCCEEDED, NodeRunStatus.FAILED, NodeRunStatus.SKIPPED, NodeRunStatus.CANCELLED}
)

EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.QUEUED: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.RUNNING: frozenset(
        {
            ExecutionStatus.WAITING,
            ExecutionStatus.SUCCEEDED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        }
    ),
    ExecutionStatus.WAITING: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.SUCCEEDED: frozenset(),
    ExecutionStatus.FAILED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}

NODE_TRANSITIONS: dict[NodeRunStatus, frozenset[NodeRunStatus]] = {
    NodeRunStatus.PENDING: frozenset(
        {NodeRunStatus.RUNNING, NodeRunStatus.SKIPPED, NodeRunStatus.CANCELLED}
    ),
    NodeRunStatus.RUNNING: frozenset(
        {NodeRunStatus.SUCCEEDED, NodeRunStatus.FAILED, NodeRunStatus.CANCELLED}
    ),
    NodeRunStatus.SUCCEEDED: frozenset(),
    NodeRunStatus.FAILED: frozenset(),
    NodeRunStatus.SKIPPED: frozenset(),
    NodeRunStatus.CANCELLED: frozenset(),
}


class IllegalTransitionError(EngineError):
    """A status change the state machine does not allow; a bug, never a silent write."""

    def __init__(self, kind: str, current: str, target: str) -> None:
        super().__init__(f"illegal {kind} transition {current} -> {target}")
        self.kind = kind
        self.current = current
        self.target = target


def check_execution_transition(current: ExecutionStatus, target: ExecutionStatus) -> None:
    if target not in EXECUTION_TRANSITIONS[current]:
        raise IllegalTransitionError("execution", current, target)


def check_node_transition(current: NodeRunStatus, target: NodeRunStatus) -> None:
    if target not in NODE_TRANSITIONS[current]:
        raise IllegalTransitionError("node run", current, target)
