"""What previews and output shapes read: an execution's node runs, and whole outputs.

The editor previews expressions against an earlier manual run of the workflow (the given
one, or the latest); these are the reads it needs, scoped like every other read to the
caller's workspaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.nodes.base import PortItems
from engine.states import NodeRunStatus
from storage import executions, payload_store, workflows
from storage.models import Execution, NodeRun, NodeRunPayload, Workflow
from storage.types import storable

MANUAL = "manual"


async def latest_manual_execution(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str]
) -> Execution | None:
    """The workflow's newest manual execution, if it is the caller's; not an `executeNode`
    run (one node on items given to it: the other nodes have no data there)."""
    if not storable(workflow_id) or not workspace_ids:
        return None
    query = (
        select(Execution)
        .where(
            Execution.workflow_id == workflow_id,
            Execution.mode == MANUAL,
            col(Execution.node_only).is_(False),
            col(Execution.workspace_id).in_(workspace_ids),
        )
        .order_by(col(Execution.created_at).desc(), col(Execution.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def execution_of_workflow(
    session: AsyncSession, execution_id: str, workflow_id: str, workspace_ids: Sequence[str]
) -> Execution | None:
    """The execution, if it is of this workflow and the caller's."""
    if not storable(execution_id):
        return None
    row = await executions.get_execution(session, execution_id, workspace_ids)
    return row if row is not None and row.workflow_id == workflow_id else None


@dataclass(frozen=True, slots=True)
class RunRef:
    """A node run, as previews need it."""

    id: str
    status: str


async def final_runs(session: AsyncSession, execution_id: str) -> dict[str, RunRef]:
    """Each node's run that counts, by node id: its successful one, else its latest."""
    query = (
        select(NodeRun.id, NodeRun.node_id, NodeRun.status)
        .where(NodeRun.execution_id == execution_id)
        .order_by(col(NodeRun.created_at), col(NodeRun.attempt))
    )
    final: dict[str, RunRef] = {}
    for run_id, node_id, status in await session.exec(query):
        kept = final.get(node_id)
        if kept is None or kept.status != NodeRunStatus.SUCCEEDED.value:
            final[node_id] = RunRef(run_id, status)
    return final


# The largest node output a preview decodes (as JSON): a preview runs on every keystroke, and
# decoding 100 MB takes the event loop most of a second.
MAX_PREVIEW_OUTPUT_BYTES = 16 * 1024 * 1024


class OutputTooLarge(Exception):
    """A node run's output is larger than a preview decodes."""

    def __init__(self, run_id: str, raw_bytes: int) -> None:
        super().__init__(f"node run {run_id!r} output is {raw_bytes:,} bytes")
        self.run_id = run_id
        self.raw_bytes = raw_bytes


async def whole_outputs(
    session: AsyncSession, run_ids: Sequence[str]
) -> dict[str, tuple[PortItems, int]]:
    """The outputs of these node runs, decoded whole, each with its size as JSON (runs
    without an output left out); `OutputTooLarge`, before anything is decoded, when one is
    larger than `MAX_PREVIEW_OUTPUT_BYTES`."""
    if not run_ids:
        return {}
    query = select(NodeRunPayload.node_run_id, NodeRunPayload.raw_bytes).where(
        col(NodeRunPayload.node_run_id).in_(run_ids)
    )
    sizes = {run_id: raw_bytes for run_id, raw_bytes in await session.exec(query)}
    for run_id, raw_bytes in sizes.items():
        if raw_bytes > MAX_PREVIEW_OUTPUT_BYTES:
            raise OutputTooLarge(run_id, raw_bytes)
    decoded = await payload_store.payloads_by_run(session, run_ids)
    return {run_id: (items, sizes.get(run_id, 0)) for run_id, items in decoded.items()}


async def execution_input(session: AsyncSession, row: Execution) -> Any:
    """The item the execution started with."""
    return await payload_store.execution_input(session, row)


async def workflow_by_id(session: AsyncSession, workflow_id: str) -> Workflow | None:
    """The draft, whatever its workspace: for a caller that reached it through a checked read."""
    if not storable(workflow_id):
        return None
    query = select(Workflow).where(Workflow.id == workflow_id).options(workflows.WITHOUT_PINS)
    return workflows.without_pins(session, (await session.exec(query)).first())
