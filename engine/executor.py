"""The executor: runs a compiled plan node by node, concurrently where the graph allows.

Semantics (see docs/architecture.md, "How a run proceeds"):

- The run starts at one node (the trigger that fired, or a named start node) with the
  execution input as its only item. Other entry nodes are SKIPPED.
- A node is ready when every incoming edge has resolved, with data or *no data*. It runs when
  at least one edge brought data, with the items of each input port concatenated in edge
  order; otherwise it is SKIPPED and all its outgoing edges resolve as no data.
- Ready nodes run concurrently, at most `max_concurrency` at a time.
- Per node: retries with exponential backoff and jitter for retryable errors, a per-attempt
  timeout, then `onError`: STOP fails the execution (running nodes are cancelled, nodes that
  never started are CANCELLED); CONTINUE emits one item carrying the error on the first
  output; ERROR_OUTPUT emits it on the `error` port.

The executor knows nothing of databases or queues: it sends `Record`s to a `Recorder`.

Over 400 lines, but one cohesive thing: one run's scheduling,
retries and recording, which share its state.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn

from engine import metrics, slices, tracing
from engine.errors import WorkflowError
from engine.events import (
    ErrorInfo,
    Event,
    EventType,
    ExecutionUpdate,
    NodeRunState,
    Record,
    Recorder,
)
from engine.expressions import ExpressionError, ExpressionLimitError
from engine.expressions.budget import DEFAULT_LIMITS, SETTING, ExpressionLimits
from engine.expressions.errors import DeadlineReached
from engine.graph import OnError
from engine.handover import RunHandover
from engine.nodes.base import (
    Item,
    NodeError,
    NodeResources,
    NodeRunContext,
    PortItems,
    RunInfo,
    Suspend,
)
from engine.nodes.growth import too_large
from engine.output_limit import DEFAULT_MAX_NODE_OUTPUT_BYTES, MIN_MAX_NODE_OUTPUT_BYTES
from engine.outputs import (
    PREVIEW_MAX_BYTES,
    EncodedOutputs,
    check_outputs,
    preview,
    serialize_outputs,
)
from engine.partial import REUSED, EarlierRun
from engine.pins import PINNED
from engine.plan import ERROR_PORT, Plan, PlanNode
from engine.retention import KEEP_ALL, SaveChoice
from engine.states import ExecutionStatus, NodeRunStatus, check_node_transition
from engine.truncation import bounded_error

ENGINE_VERSION = "1"
# The cancellation message that means "this process is stopping", not "the user cancelled":
# running attempts are recorded as FAILED with WORKER_LOST and the execution stays RUNNING,
# to be resumed (without repeating nodes that succeeded) by the next process.
SHUTDOWN = "loom-shutdown"
# The lease moved to another process: stop at once; nothing more is recorded (the writer's
# fence refuses it anyway), the other process carries on.
LEASE_LOST = "loom-lease-lost"
INTERRUPTIONS = (SHUTDOWN, LEASE_LOST)
DEFAULT_MAX_CONCURRENCY = 16
# Outputs larger than this make the node wait, after recording, until the recorder's backlog
# of payloads is small again: memory stays bounded however much data a run produces.
THROTTLE_PAYLOAD_BYTES = 1024 * 1024

# How long a node that reached the execution's deadline inside synchronous work waits for
# the execution's timeout to cancel the run (it takes one turn of the loop; a safety margin).
DEADLINE_GRACE_S = 0.25

NO_DATA: list[Item] = []  # identity marks an edge that resolved without data
# Node runs whose outputs were recorded (FAILED ones when onError routed an error item).
_WITH_PAYLOAD = (NodeRunStatus.SUCCEEDED, NodeRunStatus.FAILED)
# Node runs whose duration the metrics observe: they ran to an end.
_TIMED = (NodeRunStatus.SUCCEEDED, NodeRunStatus.FAILED)


def new_run_id() -> str:
    """A node run's id: the time in milliseconds (12 hex digits), then 80 random bits, for
    a fraction of uuid's cost. Time-ordered, as storage/models.py's `new_id` and for the
    same reason: new node runs go to the last pages of their table's key."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RunOptions:
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    # What rendering a node's parameters for one item may cost (`LOOM_EXPRESSION_*`).
    expression_limits: ExpressionLimits = DEFAULT_LIMITS
    execution_timeout_s: float | None = None
    resources: NodeResources | None = None
    # Outputs (and error items) larger than this as JSON fail their node with
    # NODE_OUTPUT_TOO_LARGE; None: no limit.
    max_node_output_bytes: int | None = DEFAULT_MAX_NODE_OUTPUT_BYTES

    def __post_init__(self) -> None:
        limit = self.max_node_output_bytes
        if limit is not None and limit < MIN_MAX_NODE_OUTPUT_BYTES:
            raise ValueError(
                f"max_node_output_bytes must be at least {MIN_MAX_NODE_OUTPUT_BYTES} (an "
                f"error item must fit), got {limit}"
            )


@dataclass(slots=True)
class RunRequest:
    """What to run: a plan, where to start, and what earlier attempts already did."""

    execution_id: str
    plan: Plan
    info: RunInfo
    input: Item = field(default_factory=dict)
    # The input's size as JSON when known (it was stored so): the start node's output, when it
    # is just the input, is then recorded as a reference without encoding it again.
    input_bytes: int | None = None
    start_node_id: str | None = None
    # The next event sequence (1 for a new execution; after the last stored one on resume).
    next_sequence: int = 1
    # Outputs of nodes that already SUCCEEDED (retry from the failed node, resume): they are
    # not run again.
    reuse: dict[str, PortItems] = field(default_factory=dict)
    # Items pinned as nodes' outputs (a manual execution's, engine/pins.py), by node id: a
    # pinned node is not run, its run records these items with `source` PINNED.
    pinned: dict[str, list[Item]] = field(default_factory=dict)
    # A run to a node (engine/partial.py): only it and its ancestors run, nodes in `reused`
    # give those outputs (of an earlier execution) recorded with `source` REUSED; the store
    # copies the output of the node run in `reused_runs` that made them, where it has one.
    # With `node_items`, only the destination runs, on these items (`executeNode`).
    destination_node_id: str | None = None
    node_items: list[Item] | None = None
    reused: dict[str, PortItems] = field(default_factory=dict)
    reused_runs: dict[str, EarlierRun] = field(default_factory=dict)
    # Attempts already used per node (resume), so attempt numbers keep counting.
    attempts_used: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    # Attempts parked by a durable wait, by node id, with when they are due: they continue
    # (same attempt) when their node is ready again.
    parked: dict[str, tuple[NodeRunState, datetime]] = field(default_factory=dict)
    # True when whoever claimed the execution already recorded its start (the runner does,
    # in the same transaction as the claim); the run then begins at `next_sequence`.
    announced: bool = False
    # A caller in this process waiting for the run's answer (a webhook): handed it in memory.
    handover: RunHandover | None = None
    # What the execution keeps of its data once it ends (engine/retention.py).
    save: SaveChoice = KEEP_ALL


@dataclass(slots=True)
class Outcome:
    status: ExecutionStatus
    error: ErrorInfo | None = None
    output: list[Item] | None = None
    node_runs: dict[str, NodeRunState] = field(default_factory=dict)
    last_sequence: int = 0
    # WAITING: when the first parked node is due, and the node runs among the parked that
    # wait for executions they started (they may have ended already: see `after_run`).
    resume_at: datetime | None = None
    waiting_on_children: list[str] = field(default_factory=list)


class StartNodeError(WorkflowError):
    """The requested start node does not exist or cannot start a run."""


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, NodeError):
        return exc.retryable
    return isinstance(exc, TimeoutError | ConnectionError)


def error_info(exc: BaseException, plan_node: PlanNode) -> ErrorInfo:
    """What the user sees of a node's failure: it names the node (and parameter)."""
    node = plan_node.node
    label = f"node {node.name!r}"
    if isinstance(exc, NodeError):
        return ErrorInfo(exc.error_type, f"{label}: {exc.message}", exc.details)
    if isinstance(exc, ExpressionLimitError):
        parameter = exc.parameter
        where = f" in parameter '{parameter}'" if parameter else ""
        return ErrorInfo(
            "EXPRESSION_LIMIT",
            f"{label}{where}: {exc}",
            {
                "expression": exc.expression,
                "parameter": parameter,
                "limit": exc.limit,
                "setting": SETTING.get(exc.limit),
            },
        )
    if isinstance(exc, ExpressionError):
        parameter = getattr(exc, "parameter", None)
        where = f" in parameter '{parameter}'" if parameter else ""
        return ErrorInfo(
            "EXPRESSION_ERROR",
            f"{label}{where}: {exc}",
            {"expression": exc.expression, "parameter": parameter},
        )
    if isinstance(exc, TimeoutError):
        return ErrorInfo(
            "NODE_TIMEOUT",
            f"{label} did not finish within {node.timeout_s} s",
            {"timeoutSeconds": node.timeout_s},
        )
    if isinstance(exc, ConnectionError):
        return ErrorInfo("CONNECTION_ERROR", f"{label}: {exc}")
    return ErrorInfo("NODE_CRASHED", f"{label} raised {type(exc).__name__}: {exc}")


async def _deadline_reached(node_deadline: float | None) -> NoReturn:
    """A behaviour stopped in synchronous work (an expression) because its deadline passed:
    end it as the timeout that is due would. The node's own: NODE_TIMEOUT at once. The
    execution's: its timeout cancels the run at the next turn of the event loop, which
    waiting here gives (EXECUTION_TIMEOUT)."""
    if node_deadline is not None and time.monotonic() >= node_deadline:
        raise TimeoutError
    await asyncio.sleep(DEADLINE_GRACE_S)
    raise TimeoutError


# What `run_node` returns for a node that parked (a durable wait): it resolves nothing.
PARKED: PortItems = {}


class _Parked(Exception):
    """Nothing can run until a parked node is due: the execution goes WAITING."""


class _Drained(Exception):
    """The run stopped at a node boundary because its process is shutting down."""


class _Failed(Exception):
    """A node failed for good with onError STOP."""

    def __init__(self, node_id: str, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.node_id = node_id
        self.error = error


class _Run:
    """The state of one execution while it runs. Only the driving coroutine mutates it,
    apart from node tasks recording their own attempts."""

    def __init__(
        self,
        request: RunRequest,
        recorder: Recorder,
        options: RunOptions,
        clock: Callable[[], datetime],
    ) -> None:
        self.request = request
        self.plan = request.plan
        self.recorder = recorder
        self.options = options
        self.clock = clock
        self.sequence = request.next_sequence - 1
        self.edges: list[list[Item] | None] = [None] * len(self.plan.edges)
        self.remaining = {
            node_id: sum(len(edges) for edges in plan_node.incoming.values())
            for node_id, plan_node in self.plan.nodes.items()
        }
        self.outputs: dict[str, PortItems] = {}
        self.named_outputs: dict[str, list[Item]] = {}
        self.states: dict[str, NodeRunState] = {}
        self.finished: set[str] = set()
        self.ready: deque[tuple[PlanNode, PortItems]] = deque()
        self.running: dict[asyncio.Task[PortItems], PlanNode] = {}
        self.interrupted = False
        # Set when the process shuts down: running nodes finish, no new ones start.
        self.draining = False
        # Attempts parked in this run (durable waits), by node id, with when they are due.
        self.parked: dict[str, tuple[NodeRunState, datetime]] = {}
        # Parked attempts that went on in this run, by node run id: when (for the metrics).
        self.resumed_at: dict[str, datetime] = {}
        # Parked nodes that wait for executions they started (sub-workflows).
        self.on_children: set[str] = set()
        # When the execution's time is up, on the monotonic clock (set when it starts).
        self.deadline: float | None = None
        # A run to a node: the nodes it needs (the others are left out, unrecorded).
        self.needed: frozenset[str] | None = None
        destination = request.destination_node_id
        if destination is not None and destination in self.plan.nodes:
            self.needed = frozenset(
                {destination}
                if request.node_items is not None
                else {destination, *self.plan.ancestor_ids(destination)}
            )

    # Recording

    def emit(
        self,
        event_type: EventType,
        *,
        state: NodeRunState | None = None,
        payload: EncodedOutputs | None = None,
        input_port: str | None = None,
        execution: ExecutionUpdate | None = None,
        event_preview: Any = None,
        payload_from: str | None = None,
        reused: PortItems | None = None,
    ) -> None:
        self.sequence += 1
        if state is not None:
            event = Event(
                self.request.execution_id,
                self.sequence,
                event_type,
                state.finished_at or state.started_at or self.clock(),
                state.node_id,
                state.node_name,
                state.attempt,
                state.status.value,
                state.duration_ms,
                state.input_items,
                state.output_items,
                state.error,
                event_preview,
            )
        else:
            event = Event(self.request.execution_id, self.sequence, event_type, self.clock())
            if execution is not None:
                event.status = execution.status.value
                event.error = execution.error
        self.recorder.emit(
            Record(event, state, payload, execution, input_port, payload_from, reused)
        )
        if state is not None and metrics.enabled() and state.status.is_terminal:
            self.observe(state)

    def observe(self, state: NodeRunState) -> None:
        """A node run that ended, in the metrics: not one that did not run (PINNED, REUSED
        outputs); a duration only for one that ran to SUCCEEDED or FAILED, and after a durable
        wait only the time since it went on (the wait is not the node's)."""
        if state.source is not None:
            return
        duration_ms = None
        if state.status in _TIMED and state.finished_at is not None:
            began = self.resumed_at.pop(state.id, None) or state.started_at
            if began is not None:
                duration_ms = (state.finished_at - began).total_seconds() * 1000
        node_type = self.plan.nodes[state.node_id].node_type.name
        metrics.node_run_finished(node_type, state.status.value, duration_ms)

    def new_state(self, plan_node: PlanNode) -> NodeRunState:
        attempt = self.request.attempts_used.get(plan_node.id, 0) + 1
        previous = self.states.get(plan_node.id)
        if previous is not None:
            attempt = previous.attempt + 1
        state = NodeRunState(
            id=new_run_id(),
            node_id=plan_node.id,
            node_name=plan_node.node.name,
            attempt=attempt,
        )
        self.states[plan_node.id] = state
        return state

    def transition(self, state: NodeRunState, status: NodeRunStatus) -> None:
        check_node_transition(state.status, status)
        state.status = status

    # Graph bookkeeping

    def resolve(self, plan_node: PlanNode, outputs: PortItems) -> None:
        """Resolve the node's outgoing edges and queue the nodes that became ready."""
        self.finished.add(plan_node.id)
        self.outputs[plan_node.id] = outputs
        first_port = plan_node.output_ports[0] if plan_node.output_ports else ""
        # Shared, not copied: behaviours never mutate items they are given.
        self.named_outputs[plan_node.node.name] = outputs.get(first_port, NO_DATA)
        pending = [plan_node.id]
        while pending:
            node_id = pending.pop()
            source = self.plan.nodes[node_id]
            node_outputs = self.outputs.get(node_id, {})
            for index in source.outgoing:
                edge = self.plan.edges[index]
                items = node_outputs.get(edge.source_output)
                self.edges[index] = items if items else NO_DATA
                self.remaining[edge.target] -= 1
                if self.remaining[edge.target] == 0:
                    target = self.plan.nodes[edge.target]
                    inputs = self.gather(target)
                    if self.needed is not None and target.id not in self.needed:
                        self.leave_out(target)
                        pending.append(target.id)
                    elif inputs is None:
                        self.skip(target)
                        pending.append(target.id)
                    else:
                        self.ready.append((target, inputs))

    def gather(self, plan_node: PlanNode) -> PortItems | None:
        """The node's inputs by port, or None when no edge brought data."""
        inputs: PortItems = {}
        for port, edge_indexes in plan_node.incoming.items():
            items: list[Item] = []
            for index in edge_indexes:
                data = self.edges[index]
                if data:
                    items.extend(data)
            if items:
                inputs[port] = items
        return inputs or None

    def leave_out(self, plan_node: PlanNode) -> None:
        """A node a run to another node does not need: not run, not recorded."""
        self.outputs[plan_node.id] = {}
        self.finished.add(plan_node.id)

    def skip(self, plan_node: PlanNode) -> None:
        state = self.new_state(plan_node)
        now = self.clock()
        state.started_at = state.finished_at = now
        self.transition(state, NodeRunStatus.SKIPPED)
        self.outputs[plan_node.id] = {}
        self.named_outputs[plan_node.node.name] = []
        self.finished.add(plan_node.id)
        self.emit(EventType.NODE_SKIPPED, state=state)

    # Running nodes

    def give_pinned(self, plan_node: PlanNode, inputs: PortItems) -> PortItems:
        """The node's pinned items as its output; the node does not run."""
        port = plan_node.output_ports[0] if plan_node.output_ports else "main"
        return self.give(plan_node, inputs, {port: self.request.pinned[plan_node.id]}, PINNED)

    def give(
        self, plan_node: PlanNode, inputs: PortItems, outputs: PortItems, source: str
    ) -> PortItems:
        """`outputs` as the node's output, recorded as a run that succeeded at once with
        `source` (PINNED, REUSED); the node does not run."""
        first: list[Item] = NO_DATA
        for items in outputs.values():
            if items:
                first = items
                break
        state = self.new_state(plan_node)
        state.started_at = state.finished_at = self.clock()
        state.input_items = sum(map(len, inputs.values()))
        state.output_items = sum(map(len, outputs.values()))
        state.source = source
        self.transition(state, NodeRunStatus.RUNNING)
        self.transition(state, NodeRunStatus.SUCCEEDED)
        if self.request.handover is not None:
            self.request.handover.succeeded(plan_node.id, outputs)
        earlier = self.request.reused_runs.get(plan_node.id) if source == REUSED else None
        if earlier is not None:
            # Stored already: the store copies the earlier run's output, encoding nothing
            # (its size says whether the first item is small enough for a preview, when
            # the output is that small or that item alone).
            size = earlier.raw_bytes if state.output_items == 1 else None
            if earlier.raw_bytes is not None and earlier.raw_bytes <= PREVIEW_MAX_BYTES:
                size = earlier.raw_bytes
            self.emit(
                EventType.NODE_SUCCEEDED,
                state=state,
                payload_from=earlier.run_id,
                reused=outputs,
                event_preview=preview(first, None, None, size),
            )
            return outputs
        # Pins were checked and bounded when pinned, reused outputs when they were made: no
        # output limit applies to them again.
        payload = serialize_outputs(outputs)
        self.emit(
            EventType.NODE_SUCCEEDED,
            state=state,
            payload=payload,
            event_preview=preview(first, payload, None),
        )
        return outputs

    def park(self, plan_node: PlanNode, suspend: Suspend) -> PortItems:
        """The node's attempt waits for a later time (a durable wait): it resolves nothing."""
        self.parked[plan_node.id] = (self.states[plan_node.id], suspend.resume_at)
        if suspend.on_children:
            self.on_children.add(plan_node.id)
        return PARKED

    async def run_node(self, plan_node: PlanNode, inputs: PortItems) -> PortItems:
        retry = plan_node.node.retry
        resumed = self.request.parked.pop(plan_node.id, None)
        if resumed is not None or retry is None or retry.max_attempts <= 1:
            if resumed is not None:  # a parked attempt goes on
                state, resume_at = resumed
                self.states[plan_node.id] = state
                if metrics.enabled():
                    self.resumed_at[state.id] = self.clock()
            else:
                state, resume_at = self.new_state(plan_node), None
            # The common case, without retries: `guarded_attempt` inlined, one coroutine less
            # per node.
            try:
                with tracing.node_run(plan_node.node_type.name, state):
                    return await slices.timed(
                        self.attempt(plan_node, inputs, state, resume_at),
                        self.request.execution_id,
                        plan_node.node.name,
                    )
            except asyncio.CancelledError as exc:
                self.note_cancellation(exc, state)
                raise
            except Exception as exc:
                self.fail_state(state, exc, plan_node)
                return self.handle_failure(plan_node, state)
            except Suspend as suspend:
                return self.park(plan_node, suspend)
        # tenacity is loaded by the first node that retries, not by every process start.
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential_jitter,
        )

        latest: list[NodeRunState] = []

        def before_sleep(_: Any) -> None:
            self.emit(EventType.NODE_RETRYING, state=latest[-1])

        retrying = AsyncRetrying(
            stop=stop_after_attempt(retry.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=retry.backoff_s,
                exp_base=retry.backoff_factor,
                max=retry.max_backoff_s,
                jitter=retry.backoff_s / 2,
            ),
            retry=retry_if_exception(_is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    latest.append(self.new_state(plan_node))
                    return await self.guarded_attempt(plan_node, inputs, latest[-1])
        except asyncio.CancelledError:
            raise
        except Exception:
            return self.handle_failure(plan_node, latest[-1])
        except Suspend as suspend:
            return self.park(plan_node, suspend)
        raise AssertionError("unreachable")  # pragma: no cover

    async def guarded_attempt(
        self, plan_node: PlanNode, inputs: PortItems, state: NodeRunState
    ) -> PortItems:
        """One attempt; its node run ends FAILED or CANCELLED if it does not succeed."""
        try:
            with tracing.node_run(plan_node.node_type.name, state):
                return await slices.timed(
                    self.attempt(plan_node, inputs, state),
                    self.request.execution_id,
                    plan_node.node.name,
                )
        except asyncio.CancelledError as exc:
            self.note_cancellation(exc, state)
            raise
        except Exception as exc:
            self.fail_state(state, exc, plan_node)
            raise

    def note_cancellation(self, exc: asyncio.CancelledError, state: NodeRunState) -> None:
        # A node run inline receives the process's shutdown before `drive` sees it.
        if exc.args and exc.args[0] in INTERRUPTIONS:
            self.interrupted = True
        self.cancel_state(state)

    def fail_state(self, state: NodeRunState, exc: Exception, plan_node: PlanNode) -> None:
        state.finished_at = self.clock()
        state.error = bounded_error(error_info(exc, plan_node))
        if state.status is NodeRunStatus.PENDING:  # failed before it started
            self.transition(state, NodeRunStatus.RUNNING)
        self.transition(state, NodeRunStatus.FAILED)

    async def attempt(
        self,
        plan_node: PlanNode,
        inputs: PortItems,
        state: NodeRunState,
        resume_at: datetime | None = None,
    ) -> PortItems:
        node = plan_node.node
        main_input = inputs.get("main") or next(iter(inputs.values()), [])
        if resume_at is None:
            state.started_at = self.clock()
            state.input_items = sum(map(len, inputs.values()))
            self.transition(state, NodeRunStatus.RUNNING)
            self.emit(EventType.NODE_STARTED, state=state)
        if node.disabled:
            outputs: PortItems = (
                {plan_node.output_ports[0]: list(main_input)} if plan_node.output_ports else {}
            )
        else:
            behaviour = plan_node.node_type.execute
            if behaviour is None:
                raise NodeError(
                    f"node type {plan_node.node_type.name!r} cannot run: its package describes "
                    "it for the editor but gives it no behaviour",
                    error_type="NOT_RUNNABLE",
                )
            deadline = node_deadline = self.deadline
            if node.timeout_s is not None:
                node_deadline = time.monotonic() + node.timeout_s
                deadline = node_deadline if deadline is None else min(deadline, node_deadline)
            context = NodeRunContext(
                node,
                plan_node.compiled,
                self.request.info,
                main_input,
                self.named_outputs,
                resume_at,
                self.options.resources,
                state.id,
                partial(self.plan.ancestor_names, plan_node.id),
                limits=self.options.expression_limits,
                deadline=deadline,
                max_output_bytes=self.options.max_node_output_bytes,
            )
            try:
                if node.timeout_s is not None:
                    async with asyncio.timeout(node.timeout_s):
                        result = await behaviour(context, inputs)
                else:
                    result = await behaviour(context, inputs)
            except DeadlineReached:
                await _deadline_reached(node_deadline if node.timeout_s is not None else None)
            finally:
                state.console = context.console  # what it printed, whether it failed or not
            outputs = check_outputs(result, plan_node.output_ports)
        input_port = self.input_port(plan_node, outputs)
        payload: EncodedOutputs | None = None
        limit = self.options.max_node_output_bytes
        if input_port is None:  # else a trigger passing the input on: referenced
            payload = serialize_outputs(outputs, limit)
        elif limit is not None and (self.request.input_bytes or 0) + 2 > limit:
            # Its output is the input as one item (`[input]`), under the same limit.
            assert self.request.input_bytes is not None
            raise too_large(self.request.input_bytes + 2, limit, input_port, "item 0")
        state.finished_at = self.clock()
        state.output_items = sum(map(len, outputs.values()))
        self.transition(state, NodeRunStatus.SUCCEEDED)
        first: list[Item] = NO_DATA
        for items in outputs.values():
            if items:
                first = items
                break
        if self.request.handover is not None:
            self.request.handover.succeeded(plan_node.id, outputs)
        self.emit(
            EventType.NODE_SUCCEEDED,
            state=state,
            payload=payload,
            input_port=input_port,
            event_preview=preview(first, payload, self.request.input_bytes),
        )
        if payload is not None and payload.raw_bytes > THROTTLE_PAYLOAD_BYTES:
            await self.recorder.throttle()
        return outputs

    def input_port(self, plan_node: PlanNode, outputs: PortItems) -> str | None:
        """The port, if the node's whole output is the execution input as its one item."""
        if plan_node.incoming or len(outputs) != 1:
            return None
        ((port, items),) = outputs.items()
        if len(items) == 1 and items[0] is self.request.input:
            return port
        return None

    def handle_failure(self, plan_node: PlanNode, state: NodeRunState) -> PortItems:
        error = state.error
        assert error is not None
        on_error = plan_node.node.on_error
        if on_error is OnError.STOP:
            self.emit(EventType.NODE_FAILED, state=state)
            # Its last attempt is its record: when several nodes fail together, the run stops
            # on the first, and the others must not get a CANCELLED attempt that never ran.
            self.finished.add(plan_node.id)
            raise _Failed(plan_node.id, error)
        error_item: Item = {"error": {"nodeId": plan_node.id, **error.to_json()}}
        ports = plan_node.output_ports
        port = ERROR_PORT if on_error is OnError.ERROR_OUTPUT else (ports[0] if ports else "main")
        outputs: PortItems = {port: [error_item]}
        # Errors are bounded (`bounded_error`), so their item fits under any limit the
        # settings allow.
        payload = serialize_outputs(outputs, self.options.max_node_output_bytes)
        state.output_items = 1
        self.emit(EventType.NODE_FAILED, state=state, payload=payload)
        return outputs

    def cancel_state(self, state: NodeRunState) -> None:
        if self.interrupted and state.status is NodeRunStatus.RUNNING:
            state.finished_at = self.clock()
            state.error = ErrorInfo(
                "WORKER_LOST",
                f"node {state.node_name!r} was interrupted when its process stopped; "
                "it runs again when the execution resumes",
            )
            self.transition(state, NodeRunStatus.FAILED)
            self.emit(EventType.NODE_FAILED, state=state)
            return
        if state.status in (NodeRunStatus.PENDING, NodeRunStatus.RUNNING):
            state.finished_at = self.clock()
            self.transition(state, NodeRunStatus.CANCELLED)
            self.emit(EventType.NODE_CANCELLED, state=state)

    # Driving

    def start(self) -> None:
        request = self.request
        start = self.start_node()  # raises before anything is recorded
        if not request.announced:
            update = ExecutionUpdate(status=ExecutionStatus.RUNNING, started_at=self.clock())
            self.emit(
                EventType.EXECUTION_RESUMED if request.resumed else EventType.EXECUTION_STARTED,
                execution=update,
            )
        if request.node_items is not None:
            # Only the destination runs, on the given items (`executeNode`).
            inputs = start.node_type.inputs
            port = inputs[0].name if inputs else "main"  # its one input (checked before)
            self.ready.append((start, {port: request.node_items}))
            return
        for plan_node in self.plan.nodes.values():
            if plan_node.incoming or plan_node.id == start.id:
                continue
            if self.needed is not None and plan_node.id not in self.needed:
                self.leave_out(plan_node)
                self.resolve(plan_node, {})
            elif plan_node.id in request.reuse:
                self.resolve(plan_node, request.reuse[plan_node.id])
            else:
                self.skip(plan_node)
                self.resolve(plan_node, {})
        if start.id in request.reuse:
            self.resolve(start, request.reuse[start.id])
        else:
            self.ready.appendleft((start, {"main": [request.input]}))

    def start_node(self) -> PlanNode:
        destination = self.request.destination_node_id
        if destination is not None and destination not in self.plan.nodes:
            raise StartNodeError(f"no node {destination!r} to run to")
        if destination is not None and self.request.node_items is not None:
            return self.plan.nodes[destination]
        start = self._start_node()
        if self.needed is not None and start.id not in self.needed:
            raise StartNodeError(
                f"node {self.plan.nodes[destination or ''].node.name!r} is not downstream of "
                f"the trigger {start.node.name!r}"
            )
        return start

    def _start_node(self) -> PlanNode:
        requested = self.request.start_node_id
        if requested is not None:
            plan_node = self.plan.nodes.get(requested)
            if plan_node is None:
                raise StartNodeError(f"no node {requested!r} to start from")
            if plan_node.incoming:
                raise StartNodeError(f"node {plan_node.node.name!r} has inputs; it cannot start")
            return plan_node
        triggers = [node for node in self.plan.triggers() if not node.incoming]
        manual = [node for node in triggers if node.node_type.name == "manual_trigger"]
        candidates = manual or triggers or self.plan.entry_nodes()
        if not candidates:
            raise StartNodeError("the workflow has no node to start from")
        return min(candidates, key=lambda node: node.order)

    async def drive(self) -> None:
        try:
            while True:
                while (
                    self.ready
                    and not self.draining
                    and len(self.running) < self.options.max_concurrency
                ):
                    plan_node, inputs = self.ready.popleft()
                    if plan_node.id in self.request.reuse:
                        self.resolve(plan_node, self.request.reuse[plan_node.id])
                        continue
                    if plan_node.id in self.request.pinned:
                        self.resolve(plan_node, self.give_pinned(plan_node, inputs))
                        continue
                    if plan_node.id in self.request.reused:
                        reused = self.request.reused[plan_node.id]
                        self.resolve(plan_node, self.give(plan_node, inputs, reused, REUSED))
                        continue
                    if not self.running and not self.ready:
                        # The only runnable node: run it in this task. A chain of nodes
                        # then costs no task creation and no asyncio.wait per node, and
                        # gives the event loop a turn once a slice has passed.
                        if slices.due():
                            await slices.give_turn()
                        outputs = await self.run_node(plan_node, inputs)
                        if outputs is not PARKED:
                            self.resolve(plan_node, outputs)
                        continue
                    task = asyncio.create_task(self.run_node(plan_node, inputs))
                    self.running[task] = plan_node
                if not self.running:
                    if self.ready:  # draining: what remains runs in the next process
                        raise _Drained
                    if self.parked:
                        raise _Parked
                    return
                done, _ = await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: self.running[t].order):
                    plan_node = self.running.pop(task)
                    outputs = task.result()
                    if outputs is not PARKED:
                        self.resolve(plan_node, outputs)
        except asyncio.CancelledError as exc:
            self.interrupted = bool(exc.args) and exc.args[0] in INTERRUPTIONS
            raise
        finally:
            await self.cancel_running()

    async def cancel_running(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.running.clear()

    def cancel_rest(self) -> None:
        """Mark every node that never finished as CANCELLED.

        A node waiting between retries has a FAILED last attempt; it gets a CANCELLED
        attempt after it, so that every unfinished node ends CANCELLED.
        """
        for node_id in self.plan.topological:
            if node_id in self.finished or node_id in self.request.reuse:
                continue
            if self.needed is not None and node_id not in self.needed:
                continue
            state = self.states.get(node_id)
            if state is not None and state.status is NodeRunStatus.CANCELLED:
                continue  # its running attempt was cancelled already
            if state is None or state.status.is_terminal:
                state = self.new_state(self.plan.nodes[node_id])
            self.cancel_state(state)

    def output(self) -> tuple[list[Item], str, str | None] | None:
        """The items of the last leaf node, in topological order, that produced data, their
        port, and the node run that recorded them, if this run did. A run to a node: that
        node's items."""
        destination = self.request.destination_node_id
        for node_id in reversed(self.plan.topological):
            plan_node = self.plan.nodes[node_id]
            if node_id != destination and (plan_node.outgoing or destination is not None):
                continue
            for port, items in self.outputs.get(node_id, {}).items():
                if items:
                    state = self.states.get(node_id)
                    recorded = state is not None and state.status in _WITH_PAYLOAD
                    return items, port, state.id if recorded and state else None
        return None

    def wait_parked(self) -> Outcome:
        """Every node that can run has run; some wait for a later time: WAITING."""
        resume_at = min(due for _, due in self.parked.values())
        update = ExecutionUpdate(
            status=ExecutionStatus.WAITING,
            resume_at=resume_at,
            parked={
                node_id: {
                    "runId": state.id,
                    "nodeName": state.node_name,
                    "attempt": state.attempt,
                    "startedAt": state.started_at.isoformat() if state.started_at else None,
                    "inputItems": state.input_items,
                    "resumeAt": due.isoformat(),
                }
                for node_id, (state, due) in self.parked.items()
            },
        )
        if self.request.handover is not None:
            self.request.handover.ended(ExecutionStatus.WAITING)
        self.emit(EventType.EXECUTION_WAITING, execution=update)
        return Outcome(
            status=ExecutionStatus.WAITING,
            node_runs=dict(self.states),
            last_sequence=self.sequence,
            resume_at=resume_at,
            waiting_on_children=[self.parked[node_id][0].id for node_id in self.on_children],
        )

    def finish(self, status: ExecutionStatus, error: ErrorInfo | None) -> Outcome:
        found = self.output() if status is ExecutionStatus.SUCCEEDED else None
        output, port, run_id = found if found is not None else (None, None, None)
        update = ExecutionUpdate(
            status=status,
            finished_at=self.clock(),
            error=error,
            output=output,
            has_output=output is not None,
            output_port=port,
            output_from=(run_id, port) if run_id is not None and port is not None else None,
            saved_data=self.request.save.for_status(status),
        )
        if self.request.handover is not None:
            self.request.handover.ended(status, error, output)
        self.emit(EventType.EXECUTION_FINISHED, execution=update)
        return Outcome(
            status=status,
            error=error,
            output=output,
            node_runs=dict(self.states),
            last_sequence=self.sequence,
        )


class Executor:
    """Runs plans. One instance serves many executions; it holds no per-run state."""

    def __init__(self, recorder: Recorder, clock: Callable[[], datetime] = utcnow) -> None:
        self.recorder = recorder
        self.clock = clock
        self._runs: set[_Run] = set()

    def drain(self) -> None:
        """Let running nodes finish and start no new ones: each run then stops, recorded
        and resumable, with `CancelledError(SHUTDOWN)`."""
        for run in self._runs:
            run.draining = True

    async def run(self, request: RunRequest, options: RunOptions | None = None) -> Outcome:
        """Run to the end and return the outcome; records are flushed before it returns.

        Cancelling the task that awaits this records the cancellation (running and pending
        nodes CANCELLED, the execution CANCELLED) before the CancelledError propagates.
        """
        options = options or RunOptions()
        run = _Run(request, self.recorder, options, self.clock)
        if options.execution_timeout_s is not None:
            run.deadline = time.monotonic() + options.execution_timeout_s
        run.start()
        self._runs.add(run)
        try:
            return await self._drive(run, options)
        finally:
            self._runs.discard(run)

    async def _drive(self, run: _Run, options: RunOptions) -> Outcome:
        outcome: Outcome
        try:
            if options.execution_timeout_s is not None:
                async with asyncio.timeout(options.execution_timeout_s):
                    await run.drive()
            else:
                await run.drive()
        except _Failed as failure:
            run.cancel_rest()
            node = run.plan.nodes[failure.node_id].node
            error = replace(failure.error, node_id=node.id, node_name=node.name)
            outcome = run.finish(ExecutionStatus.FAILED, error)
        except _Drained:
            await asyncio.shield(self.recorder.flush())
            raise asyncio.CancelledError(SHUTDOWN) from None
        except _Parked:
            outcome = run.wait_parked()
        except TimeoutError:
            run.cancel_rest()
            error = ErrorInfo(
                "EXECUTION_TIMEOUT",
                f"the execution did not finish within {options.execution_timeout_s} s",
                {"timeoutSeconds": options.execution_timeout_s},
            )
            outcome = run.finish(ExecutionStatus.FAILED, error)
        except asyncio.CancelledError:
            if run.interrupted:
                await asyncio.shield(self.recorder.flush())
                raise
            run.cancel_rest()
            run.finish(
                ExecutionStatus.CANCELLED, ErrorInfo("CANCELLED", "the execution was cancelled")
            )
            await asyncio.shield(self.recorder.flush())
            raise
        else:
            outcome = run.finish(ExecutionStatus.SUCCEEDED, None)
        await asyncio.shield(self.recorder.flush())
        return outcome
