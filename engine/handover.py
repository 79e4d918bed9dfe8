"""A run's answer handed over in memory to a caller waiting for it in the same process.

A webhook that answers with the last node's items, or with what a Respond to Webhook node
says, used to read that answer back from the database once an event said it was there. When
the process that waits also runs the execution (embedded mode), the executor puts the answer
here *before* it emits the record that announces it; the record is published only once it is
committed, so a waiter woken by that event finds here exactly what the database holds.
"""

from __future__ import annotations

from collections.abc import Collection

from engine.events import ErrorInfo
from engine.nodes.base import Item, PortItems
from engine.states import ExecutionStatus

# The webhook response modes that answer with what the run produced: the caller waits.
ANSWERING_MODES = ("last_node", "respond_node")


def webhook_waits(parameters: object) -> bool:
    """Whether a webhook trigger with these parameters answers with what its run produced."""
    mode = parameters.get("responseMode") if isinstance(parameters, dict) else None
    return mode in ANSWERING_MODES


class RunHandover:
    """What one run hands to its waiter: the outputs of the first of `node_ids` to succeed,
    and how the run ended (or that it went on elsewhere: WAITING)."""

    __slots__ = ("answered", "error", "node_ids", "output", "status")

    def __init__(self, node_ids: Collection[str] = ()) -> None:
        self.node_ids = frozenset(node_ids)
        # The first watched node that succeeded, and its outputs by port.
        self.answered: tuple[str, PortItems] | None = None
        # Set when the run stops here: terminal, or WAITING (it resumes from the database).
        self.status: ExecutionStatus | None = None
        self.error: ErrorInfo | None = None
        self.output: list[Item] | None = None

    def succeeded(self, node_id: str, outputs: PortItems) -> None:
        """A node succeeded (called before its record is emitted)."""
        if self.answered is None and node_id in self.node_ids:
            self.answered = (node_id, outputs)

    def ended(
        self,
        status: ExecutionStatus,
        error: ErrorInfo | None = None,
        output: list[Item] | None = None,
    ) -> None:
        """The run stopped with `status` (called before the record that says so)."""
        self.status, self.error, self.output = status, error, output
