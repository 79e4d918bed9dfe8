"""The data a preview or an input shape reads: a node's input and earlier nodes' outputs in
an earlier manual run, assembled as the executor assembles them.

A node's input is found through the *draft's* edges (the editor previews the graph as it is
now: a node added since the run still sees what its upstream nodes produced then), from
each upstream node's run in that execution: several edges into the port concatenate in edge
order; a skipped upstream node gives no items. A node without incoming edges sees the
execution's input, as a trigger does.

Outputs are read whole (`$input.all()` needs every item) and kept, decoded, in a small
per-process cache (`PreviewOutputs`): a finished node run's output never changes, and the
editor asks again on every keystroke.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.expressions.cache import WeightedCache
from engine.nodes.base import Item, PortItems
from engine.output_schema import (
    MAX_SAMPLED_BYTES,
    MAX_SAMPLED_ITEMS,
    Shape,
    infer_shape,
    sample_items,
)
from engine.states import ExecutionStatus, NodeRunStatus
from engine.truncation import TRUNCATED_KEY
from resolvers.caches import Lru
from schema.preview_types import OutputSchema, output_schema
from storage import previews
from storage.db import Sessions
from storage.models import Execution, Workflow
from storage.output_reads import StoredOutput, execution_inputs, node_run_outputs
from storage.previews import RunRef

SUCCEEDED = NodeRunStatus.SUCCEEDED.value
SKIPPED = NodeRunStatus.SKIPPED.value
# The cache of decoded outputs: 32 outputs, 64 MB of JSON in all (decoded, a few times that
# in memory). An output larger than that is decoded again for each preview.
CACHED_OUTPUTS = 32
CACHED_OUTPUT_BYTES = 64 * 1024 * 1024


class PreviewOutputs:
    """Decoded node run outputs and execution inputs, by id, least recently used first out."""

    def __init__(
        self, max_entries: int = CACHED_OUTPUTS, max_bytes: int = CACHED_OUTPUT_BYTES
    ) -> None:
        self._cache: WeightedCache[str, tuple[Any, int]] = WeightedCache(
            max_entries, max_bytes, lambda key, entry: entry[1]
        )

    async def outputs(self, session: AsyncSession, run_ids: Sequence[str]) -> dict[str, PortItems]:
        """The outputs of these runs (runs without one left out)."""
        found: dict[str, PortItems] = {}
        missing: list[str] = []
        for run_id in run_ids:
            cached = self._cache.get(run_id)
            if cached is None:
                missing.append(run_id)
            else:
                found[run_id] = cached[0]
        for run_id, (items, raw_bytes) in (await previews.whole_outputs(session, missing)).items():
            self._cache.put(run_id, (items, raw_bytes))
            found[run_id] = items
        return found

    async def final_runs(self, session: AsyncSession, execution: Execution) -> dict[str, RunRef]:
        """The execution's node runs that count (`previews.final_runs`); kept once it has
        finished, when they can no longer change."""
        key = f"runs:{execution.id}"
        cached = self._cache.get(key)
        if cached is not None:
            runs: dict[str, RunRef] = cached[0]
            return runs
        runs = await previews.final_runs(session, execution.id)
        if ExecutionStatus(execution.status).is_terminal:
            self._cache.put(key, (runs, 100 * len(runs)))
        return runs

    async def execution_input(self, session: AsyncSession, execution: Execution) -> Any:
        key = f"input:{execution.id}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached[0]
        value = await previews.execution_input(session, execution)
        self._cache.put(key, (value, len(orjson.dumps(value))))
        return value


@dataclass(frozen=True, slots=True)
class NoData:
    """The execution holds nothing for the node to read: say what to run first."""

    message: str
    node_id: str
    execution_id: str | None


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the node's main input comes from: (node run id, port) in edge order, or the
    execution input (`from_input`)."""

    runs: list[tuple[str, str]]
    from_input: bool
    # The node's input port they arrive on.
    port: str = "main"


def node_named(workflow: Workflow, node_id: str) -> dict[str, Any] | None:
    return next((node for node in workflow.nodes if node["id"] == node_id), None)


def no_execution(workflow: Workflow, node: dict[str, Any]) -> NoData:
    return NoData(
        f"node {node['name']!r} has no data yet: workflow {workflow.name!r} has no manual "
        "execution; run the workflow first",
        node["id"],
        None,
    )


def input_sources(
    workflow: Workflow, node: dict[str, Any], execution: Execution, runs: dict[str, RunRef]
) -> Sources | NoData:
    """Where the node's main input (port `main`, else its first input port) comes from in
    this execution, or why it has none."""
    edges = [edge for edge in workflow.edges if edge["target"] == node["id"]]
    if not edges:
        return Sources([], from_input=True)
    ports = [edge["targetInput"] for edge in edges]
    port = "main" if "main" in ports else ports[0]
    names = {data["id"]: data["name"] for data in workflow.nodes}
    sources: list[tuple[str, str]] = []
    not_run: list[str] = []
    for edge in edges:
        if edge["targetInput"] != port:
            continue
        run = runs.get(edge["source"])
        if run is None or run.status not in (SUCCEEDED, SKIPPED):
            not_run.append(names.get(edge["source"], edge["source"]))
        elif run.status == SUCCEEDED:
            sources.append((run.id, edge["sourceOutput"]))
    if not_run:
        listed = ", ".join(repr(name) for name in dict.fromkeys(not_run))
        return NoData(
            f"node {node['name']!r} has no input data in execution {execution.id!r}: "
            f"{listed} did not run successfully there; run the workflow (or the upstream "
            "node) first",
            node["id"],
            execution.id,
        )
    return Sources(sources, from_input=False, port=port)


def no_items(node: dict[str, Any], execution: Execution) -> NoData:
    return NoData(
        f"node {node['name']!r} receives no items in execution {execution.id!r} (its upstream "
        "nodes produced none or were skipped); run the workflow with data that reaches it",
        node["id"],
        execution.id,
    )


async def input_items(
    session: AsyncSession, cache: PreviewOutputs, sources: Sources, execution: Execution
) -> list[Item]:
    """The node's main input items, whole."""
    if sources.from_input:
        value = await cache.execution_input(session, execution)
        return [value if isinstance(value, dict) else {}]
    outputs = await cache.outputs(session, [run_id for run_id, _ in sources.runs])
    items: list[Item] = []
    for run_id, port in sources.runs:
        items.extend(outputs.get(run_id, {}).get(port, []))
    return items


async def node_outputs(
    session: AsyncSession, cache: PreviewOutputs, runs: dict[str, RunRef], by_name: dict[str, str]
) -> dict[str, list[Item]]:
    """The main-output items of the named nodes (`$("Name")`), as at run time: the first
    port of a node that succeeded, nothing for a skipped one; nodes without a run left out."""
    wanted = {name: runs[node_id] for name, node_id in by_name.items() if node_id in runs}
    succeeded = [run.id for run in wanted.values() if run.status == SUCCEEDED]
    outputs = await cache.outputs(session, succeeded)
    found: dict[str, list[Item]] = {}
    for name, run in wanted.items():
        if run.status == SKIPPED:
            found[name] = []
        elif run.id in outputs:
            ports = outputs[run.id]
            found[name] = next(iter(ports.values()), []) if ports else []
    return found


async def input_shape(database: Sessions, sources: Sources, execution_id: str) -> tuple[Shape, int]:
    """The shape of the node's input and how many items it has, from the first
    `MAX_SAMPLED_ITEMS` items (within `MAX_SAMPLED_BYTES`) only: each upstream output is
    read a page at a time."""
    if sources.from_input:
        stored_input = (await execution_inputs(database, [execution_id])).get(execution_id)
        if stored_input is None:
            value: Any = {}
        elif stored_input.raw_bytes > MAX_SAMPLED_BYTES:  # not read: see `sample_items`
            value = {TRUNCATED_KEY: True}
        else:
            value = await stored_input.value()
        return infer_shape([value]), 1
    stored: dict[str, StoredOutput] = await node_run_outputs(
        database, [run_id for run_id, _ in sources.runs]
    )
    sample: list[Any] = []
    total = 0
    room_bytes = MAX_SAMPLED_BYTES
    for run_id, port in sources.runs:
        output = stored.get(run_id)
        if output is None:
            continue
        count = dict(output.ports()).get(port, 0)
        total += count
        items = await sample_items(output, port, count, MAX_SAMPLED_ITEMS - len(sample), room_bytes)
        sample.extend(items)
        room_bytes -= len(orjson.dumps(items))
    return infer_shape(sample), total


async def input_schemas(
    database: Sessions, keys: Sequence[tuple[str, str]]
) -> list[OutputSchema | None]:
    """`Node.inputSchema` by (workflow id, node id), for a DataLoader: the shape of the
    node's main input in the workflow's latest manual execution (None: there is none).
    The workflow, its execution and its runs are read once for all its nodes asked."""
    contexts: dict[str, tuple[Workflow, Execution, dict[str, RunRef]] | None] = {}
    async with database.session() as session:
        for workflow_id in dict.fromkeys(workflow_id for workflow_id, _ in keys):
            workflow = await previews.workflow_by_id(session, workflow_id)
            execution = (
                None
                if workflow is None
                else await previews.latest_manual_execution(
                    session, workflow_id, [workflow.workspace_id]
                )
            )
            if workflow is None or execution is None:
                contexts[workflow_id] = None
            else:
                runs = await previews.final_runs(session, execution.id)
                contexts[workflow_id] = (workflow, execution, runs)
    found: list[OutputSchema | None] = []
    # Nodes fed by the same outputs (a fan-out) share one shape: it is inferred once.
    shapes: dict[tuple[Any, ...], OutputSchema | None] = {}
    for workflow_id, node_id in keys:
        context = contexts[workflow_id]
        node = None if context is None else node_named(context[0], node_id)
        if context is None or node is None:
            found.append(None)
            continue
        workflow, execution, runs = context
        sources = input_sources(workflow, node, execution, runs)
        if isinstance(sources, NoData):
            found.append(None)
            continue
        key = (execution.id, sources.from_input, tuple(sources.runs), sources.port)
        if key not in shapes:
            finished = execution.status in _FINISHED
            kept = _input_shapes.get(key) if finished else None
            if kept is None:
                shape, total = await input_shape(database, sources, execution.id)
                kept = (output_schema(shape, sources.port, total, execution.id) if total else None,)
                if finished:
                    _input_shapes.put(key, kept)
            shapes[key] = kept[0]
        found.append(shapes[key])
    return found


# The input shapes of finished executions (their outputs never change), across requests:
# an editor asks for every node's on each load.
_FINISHED = frozenset(
    {ExecutionStatus.SUCCEEDED.value, ExecutionStatus.FAILED.value, ExecutionStatus.CANCELLED.value}
)
_input_shapes: Lru[tuple[Any, ...], tuple[OutputSchema | None]] = Lru(max_entries=256)
