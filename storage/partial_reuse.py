"""What a run to a node reuses of an earlier execution: the outputs still valid (engine/partial.py
says which), and the earlier execution it reuses by default."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import partial
from engine.graph import Graph
from engine.nodes.base import PortItems
from engine.states import ExecutionStatus
from storage.models import (
    Execution,
    WorkflowVersion,
)
from storage.payload_store import execution_input, succeeded_outputs

_FINISHED_STATUSES = (
    ExecutionStatus.SUCCEEDED.value,
    ExecutionStatus.FAILED.value,
    ExecutionStatus.CANCELLED.value,
)


async def latest_reusable(
    session: AsyncSession, workflow_id: str, workspace_ids: Sequence[str]
) -> Execution | None:
    """The workflow's newest manual execution that ran from its trigger (not `executeNode`,
    whose node ran on items given to it): what a run to a node reuses by default."""
    query = (
        select(Execution)
        .where(
            Execution.workflow_id == workflow_id,
            Execution.mode == "manual",
            col(Execution.node_only).is_(False),
            col(Execution.workspace_id).in_(workspace_ids),
            # A run still going has not produced what it will (a second click on "run to
            # here" must not reuse the first, still queued).
            col(Execution.status).in_(_FINISHED_STATUSES),
        )
        .order_by(col(Execution.created_at).desc(), col(Execution.id).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def still_valid_outputs(
    session: AsyncSession,
    earlier_id: str,
    graph: Graph,
    pinned: dict[str, Any],
    input_value: Any,
    destination_node_id: str,
    start_node_id: str | None,
) -> dict[str, PortItems]:
    """The outputs of the earlier execution that a run to `destination_node_id` can reuse:
    of the destination's ancestors unchanged since (engine/partial.py) that succeeded then.
    Nothing when the earlier run started from another node: the input entered the graph
    elsewhere, and the other roots did not run."""
    query = (
        select(
            Execution.mode,
            WorkflowVersion.nodes,
            WorkflowVersion.edges,
            WorkflowVersion.pinned_data,
        )
        .join(WorkflowVersion, col(WorkflowVersion.id) == col(Execution.workflow_version_id))
        .where(Execution.id == earlier_id)
    )
    found = (await session.exec(query)).first()
    earlier = await session.get(Execution, earlier_id)
    if (
        found is None
        or earlier is None
        or earlier.node_only
        or earlier.start_node_id != start_node_id
    ):
        # Deleted since, a node run on given items, or started elsewhere: nothing to reuse.
        return {}
    mode, nodes, edges, earlier_pins = found
    then = partial.node_hashes(
        Graph.from_json(list(nodes), list(edges)),
        dict(earlier_pins or {}) if mode == "manual" else {},
        await execution_input(session, earlier),
    )
    now = partial.node_hashes(graph, pinned, input_value)
    keep = partial.ancestors(graph, destination_node_id)
    unchanged = {node_id for node_id in keep if now.get(node_id) == then.get(node_id)}
    # Only the outputs that may be reused are read (and decoded).
    succeeded = await succeeded_outputs(session, earlier_id, unchanged) if unchanged else {}
    return {node_id: succeeded[node_id] for node_id in partial.reusable(now, then, succeeded, keep)}
