"""What a node type's behaviour receives and returns.

A behaviour is an async function `(context, inputs) -> outputs`: `inputs` maps each input port
to its items (edges into one port concatenated in edge order), `outputs` maps output ports to
items. An item is a JSON object. A port missing from `outputs`, or mapped to an empty list,
emits *no data* and its edges resolve as such, so branches not taken end as SKIPPED.

Behaviours raise `NodeError` for expected failures (with `retryable=True` when trying again
may help); any other exception is reported as an unexpected node error. They must not mutate
their input items: copy what they change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine import slices
from engine.code import CodeSandbox
from engine.errors import EngineError
from engine.events import ConsoleOutput
from engine.expressions import CompiledParameters, Scope, compile_parameters
from engine.expressions.budget import DEFAULT_LIMITS, Budget, ExpressionLimits
from engine.graph import Node

if TYPE_CHECKING:
    from engine.http_client import HttpClient
    from engine.network_policy import NetworkPolicy

Item = dict[str, Any]
PortItems = dict[str, list[Item]]

# Loops whose work per item is small and fixed (no expressions) handle this many items
# between two `checkpoint()`s; loops that render expressions ask `due()` after every item.
CHECKPOINT_EVERY = 500


class Suspend(BaseException):
    """Raised by a behaviour to park its node until `resume_at` (a durable wait): the
    execution goes WAITING and releases its worker; a later claim resumes the same attempt,
    with `NodeRunContext.resume_at` set. A BaseException, like cancellation, so that error
    handling and retries pass it through."""

    def __init__(self, resume_at: datetime, *, on_children: bool = False) -> None:
        super().__init__(resume_at.isoformat())
        self.resume_at = resume_at
        # The attempt waits for the executions it started (sub-workflows): they wake the
        # execution when they end, earlier than `resume_at`.
        self.on_children = on_children


class NodeError(EngineError):
    """An expected failure of a node, shown to the user as its error."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "NODE_ERROR",
        retryable: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.retryable = retryable
        self.details = dict(details or {})


@dataclass(slots=True)
class RunInfo:
    """Facts about the execution that expressions and behaviours may read."""

    execution_id: str = ""
    mode: str = "manual"
    workflow_id: str = ""
    workflow_name: str = ""
    workflow_version: int = 0
    # The workspace that owns the execution: the only one whose credentials it may use.
    workspace_id: str = ""
    now: str = ""
    # Waits longer than this park the execution (durable wait) instead of sleeping in the
    # process; None: always sleep.
    durable_wait_s: float | None = None
    # How many sub-workflow calls led to this execution (0: started by a user or trigger).
    depth: int = 0


class CredentialFields(dict[str, Any]):
    """A credential's decrypted fields, with the hosts it may be sent to (`allowedDomains`,
    None: any) and its name, as a `CredentialProvider` that knows them returns them."""

    def __init__(
        self,
        fields: dict[str, Any],
        *,
        allowed_domains: tuple[str, ...] | None = None,
        name: str = "",
    ) -> None:
        super().__init__(fields)
        self.allowed_domains = allowed_domains
        self.name = name


class CredentialProvider(Protocol):
    async def fields(self, workspace_id: str, kind: str, credential_id: str) -> dict[str, Any]:
        """The decrypted fields of a credential of this kind in this workspace; raises
        `LookupError` when there is none."""
        ...


class CallRefused(EngineError):
    """A sub-workflow call that cannot be made: `code` and a message that names the cause."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SubworkflowCall:
    """Executions to start of another workflow of the caller's workspace, one per batch of
    items, linked to the calling node's attempt (`parent_run_id`)."""

    workspace_id: str
    workflow_id: str
    use_draft: bool
    batches: Sequence[Sequence[Item]]
    wait: bool
    parent_execution_id: str
    parent_node_id: str
    parent_run_id: str
    depth: int


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How one called execution ended."""

    execution_id: str
    status: str
    output: list[Item]
    error: dict[str, Any] | None


class WorkflowCaller(Protocol):
    async def start(self, call: SubworkflowCall) -> list[str]:
        """Create and submit the executions (once per attempt: a call repeated for the same
        `parent_run_id` returns those it made); raises `CallRefused`."""
        ...

    async def results(
        self, parent_run_id: str, max_bytes: int | None = None
    ) -> list[ChildResult] | None:
        """The ends of the attempt's executions in batch order; None while any still runs.
        Their outputs together larger than `max_bytes` as JSON: NodeError
        `NODE_OUTPUT_TOO_LARGE`, raised before they are read."""
        ...


@dataclass(slots=True)
class NodeResources:
    """What the process lends to behaviours that reach out: its HTTP client (with the SSRF
    guard of `network`), its credentials, for sub-workflow calls its executions, and for the
    Code node its JavaScript sandbox (with the limits the settings give)."""

    network: NetworkPolicy
    credentials: CredentialProvider
    workflows: WorkflowCaller | None = None
    code: CodeSandbox | None = None
    _http: HttpClient | None = field(default=None, init=False, repr=False)

    @property
    def http(self) -> HttpClient:
        """The HTTP client, made on first use: a process that sends no request never
        imports aiohttp."""
        if self._http is None:
            from engine.http_client import HttpClient

            self._http = HttpClient(self.network)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self.code is not None:
            self.code.close()


@dataclass(slots=True)
class NodeRunContext:
    """One attempt of one node: its parameters (rendered per item), input and run facts."""

    node: Node
    compiled: CompiledParameters
    info: RunInfo = field(default_factory=RunInfo)
    main_input: Sequence[Item] = ()
    # Main-output items of the nodes run so far, by node name, for `$node["Name"]`.
    node_outputs: Mapping[str, Sequence[Item]] = field(default_factory=dict)
    # Set when a parked attempt resumes: when it was due.
    resume_at: datetime | None = None
    resources: NodeResources | None = None
    # The attempt's node run id: stable while a parked attempt waits and resumes.
    run_id: str = ""
    # Names of the nodes upstream of this one, for behaviours that enforce the ancestor rule
    # at run time (the Code node); asked for, not given, since most nodes never need them.
    # None when unknown (a context made for a one-off).
    ancestor_names: Callable[[], frozenset[str]] | None = None
    # What the attempt printed (the Code node's console.log): the executor records it.
    console: ConsoleOutput | None = None
    # What rendering the parameters for one item may cost (`LOOM_EXPRESSION_*`).
    limits: ExpressionLimits = DEFAULT_LIMITS
    # When the node's time is up (its timeout, or the execution's, whichever is first), on
    # the monotonic clock: long expressions stop there (see `Budget.boundary`).
    deadline: float | None = None
    # The output size limit in bytes of JSON (None: none), for behaviours that count what
    # they write as they build it (engine/nodes/growth.py).
    max_output_bytes: int | None = None

    @classmethod
    def for_node(cls, node: Node, **fields: Any) -> NodeRunContext:
        """A context with the node's parameters compiled on the spot (tests, one-offs)."""
        compiled, _ = compile_parameters(node.parameters)
        return cls(node=node, compiled=compiled, **fields)

    def scope(self, item: Item | None = None, index: int = 0) -> Scope:
        info = self.info
        return Scope(
            json=item if item is not None else {},
            input=self.main_input,
            item_index=index,
            node_outputs=self.node_outputs,
            execution={"id": info.execution_id, "mode": info.mode},
            workflow={
                "id": info.workflow_id,
                "name": info.workflow_name,
                "version": info.workflow_version,
            },
            now=info.now,
            budget=self.budget(),
        )

    def parameters(self, item: Item | None = None, index: int = 0) -> dict[str, Any]:
        """The node's parameters with expressions evaluated for one item.

        Raises `ExpressionEvaluationError` when an expression fails; the executor reports it
        with the node and parameter.
        """
        if self.compiled.is_constant:
            rendered: Any = self.compiled.source
        else:
            rendered = self.compiled.render(self.scope(item, index))
        return rendered if isinstance(rendered, dict) else {}

    def budget(self) -> Budget:
        """A budget under this node's limits and deadline, for work a behaviour meters
        itself (conditions tested on rendered values)."""
        return Budget(self.limits, self.deadline)

    def due(self) -> bool:
        """Whether the event loop's slice is over: ask after each item, then `pause()`."""
        return slices.due()

    async def pause(self) -> None:
        """Give the event loop a turn. A timeout or cancellation that fell due is raised
        here, so a long loop over items stops within a slice (`engine.slices`)."""
        await slices.give_turn()

    async def checkpoint(self) -> None:
        """`pause()` when the slice is over: call between chunks of work."""
        if slices.due():
            await self.pause()

    async def sleep(self, seconds: float) -> None:
        """Wait without blocking; cancellation interrupts it at once."""
        await asyncio.sleep(seconds)


Behaviour = Callable[[NodeRunContext, PortItems], Awaitable[PortItems]]
