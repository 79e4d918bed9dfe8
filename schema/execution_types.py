"""GraphQL types of executions: runs, node runs, events."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, cast

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON

from engine.output_pages import (
    MAX_PAGE_BYTES,
    MAX_PAGE_ITEMS,
    MIN_PAGE_BYTES,
    MemoryOutput,
    MemoryValue,
    Page,
)
from engine.output_schema import MAX_SAMPLED_BYTES, MAX_SAMPLED_ITEMS, infer_shape, sample_items
from schema.context import SchemaContext, StoredOutput, StoredValue
from schema.preview_types import OutputSchema, output_schema
from schema.types import PageInfo

Info = strawberry.Info[SchemaContext, None]

PREVIEW_BYTES = 1024 * 1024


@strawberry.enum(description="Where an execution is in its life.")
class ExecutionStatus(Enum):
    QUEUED = strawberry.enum_value("QUEUED", description="Waiting to start.")
    RUNNING = strawberry.enum_value("RUNNING", description="Nodes are running.")
    WAITING = strawberry.enum_value("WAITING", description="Paused until a resume time.")
    SUCCEEDED = strawberry.enum_value("SUCCEEDED", description="Finished without error.")
    FAILED = strawberry.enum_value("FAILED", description="Stopped by an error.")
    CANCELLED = strawberry.enum_value("CANCELLED", description="Stopped on request.")


@strawberry.enum(description="Where one node attempt is in its life.")
class NodeRunStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Not started.")
    RUNNING = strawberry.enum_value("RUNNING", description="Running now.")
    SUCCEEDED = strawberry.enum_value("SUCCEEDED", description="Produced its output.")
    FAILED = strawberry.enum_value("FAILED", description="Ended with an error.")
    SKIPPED = strawberry.enum_value("SKIPPED", description="No input data reached it.")
    CANCELLED = strawberry.enum_value("CANCELLED", description="Stopped before finishing.")


@strawberry.enum(description="Where a node run's output came from.")
class NodeRunSource(Enum):
    RAN = strawberry.enum_value("RAN", description="The node ran and produced it.")
    PINNED = strawberry.enum_value(
        "PINNED",
        description="The node's pinned items (`pinNodeData`), given as its output without "
        "running it: a manual execution of a draft that pins them.",
    )
    REUSED = strawberry.enum_value(
        "REUSED",
        description="The output of the same node in an earlier execution (`reusedFrom`), "
        "given without running it: nothing that makes it changed since.",
    )


@strawberry.enum(description="What happened to an execution.")
class ExecutionEventType(Enum):
    EXECUTION_QUEUED = strawberry.enum_value("EXECUTION_QUEUED", description="Queued.")
    EXECUTION_STARTED = strawberry.enum_value("EXECUTION_STARTED", description="Started.")
    NODE_STARTED = strawberry.enum_value("NODE_STARTED", description="A node attempt started.")
    NODE_RETRYING = strawberry.enum_value(
        "NODE_RETRYING", description="A node attempt failed and will be retried."
    )
    NODE_SUCCEEDED = strawberry.enum_value("NODE_SUCCEEDED", description="A node succeeded.")
    NODE_FAILED = strawberry.enum_value("NODE_FAILED", description="A node failed for good.")
    NODE_SKIPPED = strawberry.enum_value("NODE_SKIPPED", description="A node was skipped.")
    NODE_CANCELLED = strawberry.enum_value("NODE_CANCELLED", description="A node was stopped.")
    EXECUTION_WAITING = strawberry.enum_value("EXECUTION_WAITING", description="Paused.")
    EXECUTION_RESUMED = strawberry.enum_value("EXECUTION_RESUMED", description="Resumed.")
    EXECUTION_FINISHED = strawberry.enum_value(
        "EXECUTION_FINISHED", description="Ended; `status` is the final status."
    )


@strawberry.type(description="Why a node failed.")
class NodeError:
    type: str = strawberry.field(description="Stable error type, e.g. NODE_TIMEOUT.")
    message: str = strawberry.field(description="What went wrong, naming the node.")
    details: JSON = strawberry.field(description="Extra facts (expression, parameter, ...).")


@strawberry.type(
    description="What a node run printed (the Code node's console.log, console.warn, ...), "
    "one entry per call, capped at 100 lines and 64 KB."
)
class ConsoleOutput:
    lines: list[str] = strawberry.field(description="The printed lines, in order.")
    truncated: bool = strawberry.field(
        description="Whether lines or characters past the cap were left out."
    )


@strawberry.type(description="Why an execution failed or stopped.")
class ExecutionError:
    type: str = strawberry.field(description="Stable error type, e.g. EXECUTION_TIMEOUT.")
    message: str = strawberry.field(description="What went wrong.")
    details: JSON = strawberry.field(description="Extra facts.")
    node_id: strawberry.ID | None = strawberry.field(
        default=None, description="The node whose failure ended the run, if one did."
    )
    node_name: str | None = strawberry.field(
        default=None, description="That node's name, as it was in the version that ran."
    )


@strawberry.type(
    description="A page of output items on one port: at most `limit` items and `maxBytes` of "
    "JSON. An item larger than `maxBytes` that would come first is replaced by its "
    'truncation marker, `{"$truncated": true, "bytes": N, "preview": "..."}` (N: its size as '
    "JSON; preview: the start of its JSON text), and the page ends after it."
)
class NodeRunOutput:
    port: str = strawberry.field(description="The output port.")
    items: JSON = strawberry.field(description="The items of this page.")
    offset: int = strawberry.field(description="Index of the first item of this page.")
    total: int = strawberry.field(description="How many items the port has in all.")
    truncated: bool = strawberry.field(
        description="Whether items were left out to stay under the size cap or the limit, or "
        "the page's one item is a truncation marker."
    )
    next_offset: int | None = strawberry.field(description="Offset of the next page, if any.")


def _output_page(page: Page) -> NodeRunOutput:
    return NodeRunOutput(
        port=page.port,
        items=cast(JSON, page.items),
        offset=page.offset,
        total=page.total,
        truncated=page.truncated,
        next_offset=page.next_offset,
    )


def checked_max_bytes(max_bytes: int) -> int:
    """`maxBytes` as asked, or a BAD_USER_INPUT error naming the bounds."""
    if not MIN_PAGE_BYTES <= max_bytes <= MAX_PAGE_BYTES:
        # The code of resolvers.errors.BAD_USER_INPUT (types never import resolvers).
        raise GraphQLError(
            f"maxBytes must be between {MIN_PAGE_BYTES} and {MAX_PAGE_BYTES}, got {max_bytes}",
            extensions={"code": "BAD_USER_INPUT", "field": "maxBytes"},
        )
    return max_bytes


class _Pages:
    """Pages of one stored output, each read once per object: `output` and
    `outputTruncated` ask for the same page."""

    def __init__(self) -> None:
        self.pages: dict[tuple[str | None, int, int, int], Page | None] = {}

    async def page(
        self,
        output: StoredOutput | None,
        port: str | None,
        offset: int,
        limit: int,
        max_bytes: int,
    ) -> Page | None:
        key = (port, offset, limit, checked_max_bytes(max_bytes))
        if key not in self.pages:
            ports = output.ports() if output is not None else []
            has_items = any(count for _, count in ports)
            self.pages[key] = (
                await output.page(port, offset, limit, max_bytes)
                if output is not None and ports and (has_items or port is not None)
                else None
            )
        return self.pages[key]


_max_bytes_argument = strawberry.argument(
    description=f"The cap, in bytes of JSON: from {MIN_PAGE_BYTES} to {MAX_PAGE_BYTES}."
)
_offset_argument = strawberry.argument(description="Index of the first item to return.")
_limit_argument = strawberry.argument(
    description=f"At most this many items (1 to {MAX_PAGE_ITEMS})."
)


@strawberry.type(description="One attempt of one node in an execution.")
class NodeRun:
    id: strawberry.ID = strawberry.field(description="Node run id.")
    node_id: strawberry.ID = strawberry.field(description="The node's id.")
    node_name: str = strawberry.field(description="The node's name at that version.")
    status: NodeRunStatus = strawberry.field(description="Status of this attempt.")
    attempt: int = strawberry.field(description="1 for the first attempt, then 2, 3, ...")
    started_at: datetime | None = strawberry.field(description="When the attempt started.")
    finished_at: datetime | None = strawberry.field(description="When it ended.")
    duration_ms: float | None = strawberry.field(description="How long it took.")
    input_items: int | None = strawberry.field(description="Items it received.")
    output_items: int | None = strawberry.field(description="Items it produced, all ports.")
    error: NodeError | None = strawberry.field(description="Why it failed, if it did.")
    console: ConsoleOutput | None = strawberry.field(
        description="What the attempt printed (Code node), whether it succeeded or failed; "
        "null for nodes that print nothing. Lost when the script is stopped by a limit."
    )
    source: NodeRunSource = strawberry.field(
        default=NodeRunSource.RAN,
        description="Where its output came from: RAN when the node ran, PINNED for its "
        "pinned items, REUSED for an earlier execution's output (it did not run then).",
    )
    pages: strawberry.Private[_Pages | None] = None

    @strawberry.field(
        description="Preview of the output: the items of the first port with data, capped at "
        "`maxBytes` of JSON (1 MB by default; a first item larger than that is replaced by its "
        "truncation marker, see `NodeRunOutput`); see `outputTruncated` and `outputPage`."
    )
    async def output(
        self, info: Info, max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES
    ) -> JSON | None:
        page = await self._page(info, None, 0, MAX_PAGE_ITEMS, max_bytes)
        return None if page is None else cast(JSON, page.items)

    @strawberry.field(description="Whether `output` (with the same maxBytes) was cut short.")
    async def output_truncated(
        self, info: Info, max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES
    ) -> bool:
        page = await self._page(info, None, 0, MAX_PAGE_ITEMS, max_bytes)
        return page is not None and page.truncated

    @strawberry.field(description="Output ports that carry items, in port order.")
    async def output_ports(self, info: Info) -> list[str]:
        output = await info.context.loaders.node_run_outputs.load(str(self.id))
        return [port for port, count in (output.ports() if output else []) if count]

    @strawberry.field(description="A page of the full output of one port (default: the first).")
    async def output_page(
        self,
        info: Info,
        port: str | None = None,
        offset: Annotated[int, _offset_argument] = 0,
        limit: Annotated[int, _limit_argument] = 100,
        max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES,
    ) -> NodeRunOutput | None:
        page = await self._page(info, port, offset, limit, max_bytes)
        return None if page is None else _output_page(page)

    @strawberry.field(
        description="The shape of one port's items (default: the first port with items), "
        f"inferred from its first {MAX_SAMPLED_ITEMS:,} items (within "
        f"{MAX_SAMPLED_BYTES // (1024 * 1024)} MB of JSON) without sending them: for "
        "autocomplete and drag-and-drop mapping. Null when the run has no output or no such "
        "port."
    )
    async def output_schema(self, info: Info, port: str | None = None) -> OutputSchema | None:
        output = await info.context.loaders.node_run_outputs.load(str(self.id))
        ports = output.ports() if output is not None else []
        if output is None or not ports:
            return None
        chosen = port if port is not None else next((p for p, n in ports if n), ports[0][0])
        if chosen not in dict(ports):
            return None
        key = (str(self.id), chosen)
        cached = info.context.output_shapes.get(key)
        if cached is not None:
            return cached
        total = dict(ports)[chosen]
        sample = await sample_items(output, chosen, total, MAX_SAMPLED_ITEMS, MAX_SAMPLED_BYTES)
        shape = output_schema(infer_shape(sample), chosen, total)
        if self.status is NodeRunStatus.SUCCEEDED:  # its output is final
            info.context.output_shapes.put(key, shape)
        return shape

    async def _page(
        self, info: Info, port: str | None, offset: int, limit: int, max_bytes: int
    ) -> Page | None:
        if self.pages is None:
            self.pages = _Pages()
        output = await info.context.loaders.node_run_outputs.load(str(self.id))
        return await self.pages.page(output, port, offset, limit, max_bytes)


@strawberry.type(description="One run of a workflow version.")
class Execution:
    id: strawberry.ID = strawberry.field(description="Execution id.")
    workflow_id: strawberry.ID = strawberry.field(description="The workflow it ran.")
    workflow_version: int = strawberry.field(description="The pinned version it ran.")
    status: ExecutionStatus = strawberry.field(description="Current status.")
    mode: str = strawberry.field(description="manual, webhook, schedule, retry, subworkflow.")
    error: ExecutionError | None = strawberry.field(description="Why it failed, if it did.")
    engine_version: str = strawberry.field(description="Version of the engine that ran it.")
    retry_of: strawberry.ID | None = strawberry.field(description="The execution it retries.")
    destination_node_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="A run to a node (`executeWorkflow(destinationNodeId)`, `executeNode`): "
        "the node; only it and what it needs ran. Null for a whole run.",
    )
    node_only: bool = strawberry.field(
        default=False,
        description="True for `executeNode`: only the destination ran, on the items given "
        "(the execution's input is `{items}`).",
    )
    reused_from: strawberry.ID | None = strawberry.field(
        default=None,
        description="The earlier execution whose still-valid outputs a run to a node reused "
        "(its node runs with `source` REUSED); null when there was none.",
    )
    parent_execution_id: strawberry.ID | None = strawberry.field(
        description="For a sub-workflow execution: the execution whose Execute Workflow node "
        "started it."
    )
    parent_node_id: strawberry.ID | None = strawberry.field(
        description="For a sub-workflow execution: the Execute Workflow node that started it."
    )
    call_depth: int = strawberry.field(
        description="How many sub-workflow calls led to it: 0 when a user or trigger started it."
    )
    created_at: datetime = strawberry.field(description="When it was queued.")
    started_at: datetime | None = strawberry.field(description="When it started running.")
    finished_at: datetime | None = strawberry.field(description="When it ended.")
    duration_ms: float | None = strawberry.field(description="Run time, start to end.")
    # Values stored in the executions row by releases before input and output moved out.
    legacy_input: strawberry.Private[object] = None
    legacy_output: strawberry.Private[object] = None

    pages: strawberry.Private[_Pages | None] = None

    @strawberry.field(
        description="The input item it started with, capped at `maxBytes` of JSON (1 MB by "
        "default): a larger input is replaced by its truncation marker (see `NodeRunOutput`) "
        "and `inputTruncated` is true."
    )
    async def input(
        self, info: Info, max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES
    ) -> JSON | None:
        value, _ = await self._input(info, max_bytes)
        return cast(JSON, value)

    @strawberry.field(description="Whether `input` (with the same maxBytes) was truncated.")
    async def input_truncated(
        self, info: Info, max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES
    ) -> bool:
        _, cut = await self._input(info, max_bytes)
        return cut

    async def _input(self, info: Info, max_bytes: int) -> tuple[object, bool]:
        found: StoredValue | None = await info.context.loaders.execution_inputs.load(str(self.id))
        if found is None:
            found = MemoryValue(self.legacy_input)
        return await found.read(checked_max_bytes(max_bytes))

    @strawberry.field(
        description="Items of the last leaf node (topological order) that produced data, "
        "capped at `maxBytes` of JSON (1 MB by default; a first item larger than that is "
        "replaced by its truncation marker, see `NodeRunOutput`); see `outputTruncated` and "
        "`outputPage`."
    )
    async def output(
        self, info: Info, max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES
    ) -> JSON | None:
        page = await self._page(info, 0, MAX_PAGE_ITEMS, max_bytes)
        return None if page is None else cast(JSON, page.items)

    @strawberry.field(description="Whether `output` (with the same maxBytes) was cut short.")
    async def output_truncated(
        self, info: Info, max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES
    ) -> bool:
        page = await self._page(info, 0, MAX_PAGE_ITEMS, max_bytes)
        return page is not None and page.truncated

    @strawberry.field(description="A page of the output's items.")
    async def output_page(
        self,
        info: Info,
        offset: Annotated[int, _offset_argument] = 0,
        limit: Annotated[int, _limit_argument] = 100,
        max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_BYTES,
    ) -> NodeRunOutput | None:
        page = await self._page(info, offset, limit, max_bytes)
        return None if page is None else _output_page(page)

    async def _page(self, info: Info, offset: int, limit: int, max_bytes: int) -> Page | None:
        if self.pages is None:
            self.pages = _Pages()
        output = await info.context.loaders.execution_outputs.load(str(self.id))
        if output is None and isinstance(self.legacy_output, list):
            output = MemoryOutput({"main": self.legacy_output})
        return await self.pages.page(output, None, offset, limit, max_bytes)

    @strawberry.field(
        description="The sub-workflow executions its Execute Workflow nodes started, oldest first."
    )
    async def sub_executions(self, info: Info) -> list[Execution]:
        return await info.context.loaders.sub_executions.load(str(self.id))

    @strawberry.field(
        description="Node runs, one per node and attempt, in the order they started; page "
        "with `first` and `after` (the `id` of the last run of the previous page)."
    )
    async def node_runs(
        self, info: Info, first: int = 500, after: strawberry.ID | None = None
    ) -> list[NodeRun]:
        runs = await info.context.loaders.node_runs.load(str(self.id))
        if after is not None:
            ids = [run.id for run in runs]
            if after not in ids:
                # The code of resolvers.errors.INVALID_CURSOR (types never import resolvers).
                raise GraphQLError(
                    f"invalid cursor {after[:64]!r}: not a node run of this execution",
                    extensions={"code": "INVALID_CURSOR"},
                )
            runs = runs[ids.index(after) + 1 :]
        return runs[: max(first, 0)]


@strawberry.type(description="One execution in a connection, with its cursor.")
class ExecutionConnectionEdge:
    cursor: str = strawberry.field(description="Opaque cursor; pass as `after`.")
    node: Execution = strawberry.field(description="The execution.")


@strawberry.type(description="A page of executions, newest first.")
class ExecutionConnection:
    edges: list[ExecutionConnectionEdge] = strawberry.field(description="This page.")
    page_info: PageInfo = strawberry.field(description="Paging state.")


@strawberry.type(description="A transition of an execution, as the live stream sends it.")
class ExecutionEvent:
    execution_id: strawberry.ID = strawberry.field(description="The execution.")
    sequence: int = strawberry.field(description="1, 2, 3, ... without gaps.")
    type: ExecutionEventType = strawberry.field(description="What happened.")
    node_id: strawberry.ID | None = strawberry.field(description="The node, for node events.")
    node_name: str | None = strawberry.field(description="The node's name.")
    attempt: int | None = strawberry.field(description="The node attempt.")
    status: str | None = strawberry.field(description="Status after the event.")
    at: datetime = strawberry.field(description="When it happened.")
    duration_ms: float | None = strawberry.field(description="Node run duration.")
    input_items: int | None = strawberry.field(description="Items the node received.")
    item_count: int | None = strawberry.field(description="Items the node produced.")
    error: NodeError | None = strawberry.field(description="The error, for failures.")
    preview: JSON | None = strawberry.field(description="The first output item, if small.")
