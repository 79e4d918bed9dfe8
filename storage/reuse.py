"""What a run to a node reuses from an earlier execution, and how (issue 16; engine/partial.py).

A run to a node reuses the outputs of the destination's ancestors that have not changed
since an earlier manual execution (`reuse_from`): equal content hashes of a node and its
ancestry in both versions, and the node succeeded then. The executor needs those outputs
decoded (they flow into the nodes that run, and expressions read them); the store does not:
each reused node run's output is copied inside the database, from the earlier node run's
payload row to a row of its own (`COPY_PAYLOAD`, run by the group-commit writer), never
decoded, encoded and compressed again. Every execution owns its rows: deleting the earlier
execution (retention) takes nothing from the later one.

The earlier execution's hashes depend only on what never changes once it exists (its
version snapshot with its pins, its mode and its input), so each process keeps those of the
executions it reused from or ran to a node lately (`ReuseCaches`): the editor's loop runs to a
node again and again, each time reusing the run before.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import String, Table, bindparam, insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import partial
from engine.graph import Graph
from engine.nodes.base import PortItems
from engine.partial import EarlierRun
from engine.states import ExecutionStatus, NodeRunStatus
from storage import payload_store, payloads
from storage.db import run_core
from storage.models import Execution, NodeRun, NodeRunPayload, WorkflowVersion
from storage.types import storable

_PAYLOADS: Table = NodeRunPayload.__table__  # type: ignore[attr-defined]
_RUNS: Table = NodeRun.__table__  # type: ignore[attr-defined]
K = TypeVar("K")
V = TypeVar("V")

# The earlier node run's payload row, as the reused node run's own (one statement per batch,
# executed with a row per reused node run: node_run_id, execution_id, earlier_run_id). A
# payload that refers to the execution input (`payloads.INPUT_REFERENCE`) refers to the new
# execution's, which is equal: the input is part of the hashes of the nodes it enters.
COPY_PAYLOAD = insert(_PAYLOADS).from_select(
    ["node_run_id", "execution_id", "encoding", "raw_bytes", "data"],
    sa.select(
        bindparam("node_run_id", type_=String(36)),
        bindparam("execution_id", type_=String(36)),
        _PAYLOADS.c.encoding,
        _PAYLOADS.c.raw_bytes,
        _PAYLOADS.c.data,
    ).where(_PAYLOADS.c.node_run_id == bindparam("earlier_run_id", type_=String(36))),
)

# A hash is 64 characters a node: a few hundred kB for the largest graphs, so few entries.
_MAX_ENTRIES = 64


class ReuseCaches:
    """Node hashes by execution id, and by version and input (see the module docstring);
    the graph of each version. Kept by the process's execution source (as its runner keeps
    the plan cache), the newest `_MAX_ENTRIES` of each."""

    def __init__(self) -> None:
        self.hashes: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.version_hashes: OrderedDict[tuple[str, bytes], dict[str, str]] = OrderedDict()
        self.graphs: OrderedDict[str, Graph] = OrderedDict()


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> V:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _MAX_ENTRIES:
        cache.popitem(last=False)
    return value


def _recall(cache: OrderedDict[K, V], key: K) -> V | None:
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


@dataclass(slots=True)
class Reused:
    """The outputs a run to a node reuses, by node id, and the earlier node run that made
    each (whose payload row its node run's is copied from)."""

    outputs: dict[str, PortItems] = field(default_factory=dict)
    runs: dict[str, EarlierRun] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunToNode:
    """A run to a node as loaded: its execution, version (graph and pins) and input."""

    execution_id: str
    version_id: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    pinned: dict[str, Any]
    input_value: Any
    destination_node_id: str
    start_node_id: str | None


async def still_valid_outputs(
    session: AsyncSession, run: RunToNode, earlier_id: str, caches: ReuseCaches
) -> Reused:
    """What `run` can reuse of execution `earlier_id`: the outputs of the destination's
    ancestors unchanged since (engine/partial.py) that succeeded then. Nothing when the
    earlier run started from another node: the input entered the graph elsewhere, and the
    other roots did not run."""
    graph = _recall(caches.graphs, run.version_id) or _remember(
        caches.graphs, run.version_id, Graph.from_json(run.nodes, run.edges)
    )
    seed = hashlib.sha256(orjson.dumps(run.input_value, option=orjson.OPT_SORT_KEYS)).digest()
    now = _recall(caches.version_hashes, (run.version_id, seed)) or _remember(
        caches.version_hashes,
        (run.version_id, seed),
        partial.node_hashes(graph, run.pinned, run.input_value),
    )
    _remember(caches.hashes, run.execution_id, now)
    earlier = (
        await session.exec(
            select(
                Execution.workflow_version_id,
                Execution.mode,
                Execution.node_only,
                Execution.start_node_id,
            ).where(Execution.id == earlier_id)
        )
    ).first()
    if earlier is None:
        return Reused()  # deleted since
    version_id, mode, node_only, earlier_start = earlier
    if node_only or earlier_start != run.start_node_id:
        # A node run on given items, or started elsewhere: nothing to reuse.
        return Reused()
    then = _recall(caches.hashes, earlier_id) or _remember(
        caches.hashes, earlier_id, await _hashes_of(session, earlier_id, version_id, mode)
    )
    keep = partial.ancestors(graph, run.destination_node_id)
    unchanged = [node_id for node_id in keep if now.get(node_id) == then.get(node_id)]
    if not unchanged:
        return Reused()
    # Only the outputs that may be reused are read (and decoded).
    query = (
        sa.select(
            _RUNS.c.node_id,
            _RUNS.c.id,
            _PAYLOADS.c.encoding,
            _PAYLOADS.c.raw_bytes,
            _PAYLOADS.c.data,
        )
        .join(_PAYLOADS, _PAYLOADS.c.node_run_id == _RUNS.c.id)
        .where(
            _RUNS.c.execution_id == earlier_id,
            _RUNS.c.status == NodeRunStatus.SUCCEEDED.value,
            _RUNS.c.node_id.in_(unchanged),
        )
    )
    reused = Reused()
    for node_id, run_id, encoding, raw_bytes, data in await run_core(session, query):
        if encoding == payloads.INPUT_REFERENCE:
            # The earlier execution's input, equal to this one's (the node's hash says so).
            reused.runs[node_id] = EarlierRun(run_id, None)
            reused.outputs[node_id] = {data.decode(): [run.input_value]}
        else:
            reused.runs[node_id] = EarlierRun(run_id, raw_bytes)
            reused.outputs[node_id] = payloads.decode(data, encoding)
    kept = partial.reusable(now, then, reused.outputs, keep)
    return Reused(
        outputs={node_id: reused.outputs[node_id] for node_id in kept},
        runs={node_id: reused.runs[node_id] for node_id in kept},
    )


async def _hashes_of(
    session: AsyncSession, execution_id: str, version_id: str, mode: str
) -> dict[str, str]:
    """The node hashes of an earlier execution, from its snapshot, pins and input."""
    query = select(WorkflowVersion.nodes, WorkflowVersion.edges, WorkflowVersion.pinned_data).where(
        WorkflowVersion.id == version_id
    )
    found = (await session.exec(query)).first()
    if found is None:
        return {}
    nodes, edges, pinned = found
    row = await session.get(Execution, execution_id)
    return partial.node_hashes(
        Graph.from_json(list(nodes), list(edges)),
        # Only manual executions use pins (storage/executions.py, `_load_in`).
        dict(pinned or {}) if mode == "manual" else {},
        None if row is None else await payload_store.execution_input(session, row),
    )


async def uncopied(session: AsyncSession, node_run_ids: Sequence[str]) -> list[str]:
    """Those of `node_run_ids` (reused outputs just copied) that have no payload row: the
    earlier row was gone when `COPY_PAYLOAD` ran."""
    query = sa.select(_PAYLOADS.c.node_run_id).where(_PAYLOADS.c.node_run_id.in_(node_run_ids))
    stored = {row[0] for row in await run_core(session, query)}
    return [run_id for run_id in node_run_ids if run_id not in stored]


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


async def reuse_candidate(
    session: AsyncSession, execution_id: str, workspace_ids: Sequence[str]
) -> tuple[str, bool] | None:
    """The workflow of an execution the caller may see, and whether it has finished (a
    `reuseFrom` to check: two columns, not the execution's row), or None."""
    if not storable(execution_id) or len(execution_id) > 36:
        return None
    query = select(Execution.workflow_id, Execution.status).where(
        Execution.id == execution_id, col(Execution.workspace_id).in_(workspace_ids)
    )
    found = (await session.exec(query)).first()
    return None if found is None else (found[0], found[1] in _FINISHED_STATUSES)
