"""The per-request context: who is calling, the process's services, and DataLoaders."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from engine import log_context
from engine.bus import EventFanout, EventPublisher
from engine.expressions import ExpressionLimits
from engine.expressions.budget import DEFAULT_LIMITS
from engine.graph import Graph
from engine.lifecycle import ExecutionLifecycle
from engine.node_type_policy import EMPTY, PolicySnapshot
from engine.node_types import NodeTypeRegistry
from engine.plan import PlanCache
from engine.submitter import Submitter
from engine.validation import GraphLimits
from resolvers import mapping, preview_data
from resolvers.auth import Authenticator
from resolvers.caches import Lru
from resolvers.errors import UNAUTHENTICATED, RequestError
from resolvers.live_reads import LiveReads
from resolvers.preview_data import PreviewOutputs
from resolvers.updates_feed import UpdatesFeed
from schema import execution_types as xtypes
from schema import types
from schema.preview_types import OutputSchema
from schema.sharing import SharedResult
from storage import accounts, executions, output_reads, workflows, workspaces
from storage.accounts import Principal
from storage.db import Database, Sessions
from storage.node_type_policies import NodeTypePolicies
from storage.output_reads import StoredOutput, StoredValue
from storage.secrets import SecretBox
from storage.starts import EmbeddedStarts
from storage.webhooks import RouteCache

# Sends `next` messages of shared results, in order, straight to a subscription's websocket;
# False when the operation is over.
DirectSender = Callable[[Sequence[SharedResult]], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class Services:
    """Long-lived, per-process dependencies of the resolvers, built in the app's lifespan."""

    database: Database
    registry: NodeTypeRegistry
    authenticator: Authenticator
    # The database reads of subscriptions: bounded, shared, retried.
    live_reads: LiveReads
    graph_limits: GraphLimits = field(default_factory=GraphLimits)
    max_page_size: int = 100
    submitter: Submitter | None = None
    plan_cache: PlanCache = field(default_factory=PlanCache)
    # Drafts found runnable, by (workflow id, revision), with the (id, type) of each node
    # that runs (not disabled): a revision never changes, so a draft checked once is not
    # compiled again to run it, and the node type policies are checked on what is kept.
    runnable_drafts: Lru[tuple[str, int], tuple[tuple[str, str], ...]] = field(default_factory=Lru)
    # Snapshot (id, version number) of a draft revision, once written (snapshots are
    # immutable and live as long as their workflow).
    snapshots: Lru[tuple[str, int], tuple[str, int]] = field(default_factory=Lru)
    # The graph of a runnable draft revision once run from or to a chosen node: the next
    # such run checks the nodes chosen on it, without reading and checking the draft again.
    draft_graphs: Lru[tuple[str, int], Graph] = field(default_factory=lambda: Lru(64))
    # Live events: this process's subscribers, and where committed events are announced.
    fanout: EventFanout | None = None
    publisher: EventPublisher | None = None
    # The one reader of status changes that serves every `executionUpdates` subscriber.
    updates_feed: UpdatesFeed | None = None
    # Encrypts credential secrets (None: no key configured).
    secret_box: SecretBox | None = None
    # Webhook routes looked up recently; cleared when this process changes routes.
    webhook_routes: RouteCache = field(default_factory=lambda: RouteCache(ttl_s=1.0))
    # Embedded mode: starts of executions this process runs at once, in one write.
    starts: EmbeddedStarts | None = None
    # Which node types are disabled where (None: the app was built without policies, as
    # some tests build it: nothing is disabled, and setNodeTypeEnabled is refused).
    policies: NodeTypePolicies | None = None

    def node_type_policy(self) -> PolicySnapshot:
        """The node type policies in force, as this process knows them (no I/O)."""
        return EMPTY if self.policies is None else self.policies.current

    # What rendering a node's parameters for one item may cost (`LOOM_EXPRESSION_*`): the
    # run's limits, which previews use too.
    expression_limits: ExpressionLimits = DEFAULT_LIMITS
    # Expression previews: decoded outputs of node runs, read again on every keystroke.
    preview_outputs: PreviewOutputs = field(default_factory=PreviewOutputs)
    # Output shapes of finished node runs, by (node run id, port): they never change.
    output_shapes: Lru[tuple[str, str], OutputSchema] = field(default_factory=Lru)
    # Every transition of an execution outside its run: start, cancel, after a run.
    lifecycle: ExecutionLifecycle | None = None


class RequestLoaders:
    """DataLoaders of one request: a batch of lookups of one kind costs one query."""

    def __init__(self, database: Sessions, *, cache: bool = True) -> None:
        """`database` is the process's, or for a websocket connection the bounded reads of
        subscriptions; `cache=False` for a websocket connection: it lives long, and what it
        loads changes (a subscription sends an execution again when its status changed)."""
        self._database = database
        self.users: DataLoader[str, types.User | None] = DataLoader(
            load_fn=self._load_users, cache=cache
        )
        self.workspaces: DataLoader[str, types.Workspace | None] = DataLoader(
            load_fn=self._load_workspaces, cache=cache
        )
        self.workspace_members: DataLoader[str, list[types.WorkspaceMember]] = DataLoader(
            load_fn=self._load_workspace_members, cache=cache
        )
        self.workflow_versions: DataLoader[str, list[types.WorkflowVersion]] = DataLoader(
            load_fn=self._load_workflow_versions, cache=cache
        )
        self.node_runs: DataLoader[str, list[xtypes.NodeRun]] = DataLoader(
            load_fn=self._load_node_runs, cache=cache
        )
        self.node_run_outputs: DataLoader[str, StoredOutput | None] = DataLoader(
            load_fn=self._load_node_run_outputs, cache=cache
        )
        self.execution_inputs: DataLoader[str, StoredValue | None] = DataLoader(
            load_fn=self._load_execution_inputs, cache=cache
        )
        self.execution_outputs: DataLoader[str, StoredOutput | None] = DataLoader(
            load_fn=self._load_execution_outputs, cache=cache
        )
        self.sub_executions: DataLoader[str, list[xtypes.Execution]] = DataLoader(
            load_fn=self._load_sub_executions, cache=cache
        )
        self.input_shapes: DataLoader[tuple[str, str], OutputSchema | None] = DataLoader(
            load_fn=self._load_input_shapes, cache=cache
        )
        self.draft_pins: DataLoader[str, dict[str, Any]] = DataLoader(
            load_fn=self._load_draft_pins, cache=cache
        )

    async def _load_draft_pins(self, workflow_ids: Sequence[str]) -> list[dict[str, Any]]:
        async with self._database.session() as session:
            pinned = await workflows.draft_pins(session, workflow_ids)
        return [dict(pinned.get(workflow_id) or {}) for workflow_id in workflow_ids]

    async def _load_input_shapes(
        self, keys: Sequence[tuple[str, str]]
    ) -> list[OutputSchema | None]:
        return await preview_data.input_schemas(self._database, keys)

    async def _load_sub_executions(
        self, execution_ids: Sequence[str]
    ) -> list[list[xtypes.Execution]]:
        async with self._database.session() as session:
            grouped = await executions.children_by_parent(session, execution_ids)
        return [[mapping.execution(row) for row in grouped[i]] for i in execution_ids]

    # Stored inputs and outputs are read a page at a time (storage/output_reads.py): these
    # load where each is and its start, not the whole.
    async def _load_execution_inputs(
        self, execution_ids: Sequence[str]
    ) -> list[StoredValue | None]:
        found = await output_reads.execution_inputs(self._database, execution_ids)
        return [found.get(i) for i in execution_ids]

    async def _load_execution_outputs(
        self, execution_ids: Sequence[str]
    ) -> list[StoredOutput | None]:
        found = await output_reads.execution_outputs(self._database, execution_ids)
        return [found.get(i) for i in execution_ids]

    async def _load_node_runs(self, execution_ids: Sequence[str]) -> list[list[xtypes.NodeRun]]:
        async with self._database.session() as session:
            grouped = await executions.node_runs(session, execution_ids)
        return [[mapping.node_run(row) for row in grouped[i]] for i in execution_ids]

    async def _load_node_run_outputs(self, run_ids: Sequence[str]) -> list[StoredOutput | None]:
        found = await output_reads.node_run_outputs(self._database, run_ids)
        return [found.get(i) for i in run_ids]

    async def _load_users(self, user_ids: Sequence[str]) -> list[types.User | None]:
        async with self._database.session() as session:
            rows = await accounts.users_by_ids(session, user_ids)
        return [mapping.user(rows[i]) if i in rows else None for i in user_ids]

    async def _load_workspaces(self, workspace_ids: Sequence[str]) -> list[types.Workspace | None]:
        async with self._database.session() as session:
            rows = await accounts.workspaces_by_ids(session, workspace_ids)
        return [mapping.workspace(rows[i]) if i in rows else None for i in workspace_ids]

    async def _load_workspace_members(
        self, workspace_ids: Sequence[str]
    ) -> list[list[types.WorkspaceMember]]:
        async with self._database.session() as session:
            grouped = await workspaces.members_by_workspace(session, workspace_ids)
        return [
            [types.WorkspaceMember(user=mapping.user(m.user), role=m.role) for m in grouped[i]]
            for i in workspace_ids
        ]

    async def _load_workflow_versions(
        self, workflow_ids: Sequence[str]
    ) -> list[list[types.WorkflowVersion]]:
        async with self._database.session() as session:
            grouped = await workflows.versions_by_workflow(session, workflow_ids)
        return [[mapping.workflow_version(row) for row in grouped[i]] for i in workflow_ids]


@dataclass(slots=True)
class Context:
    """What every resolver receives as `info.context`."""

    services: Services
    request: Request | WebSocket
    response: Response | WebSocket | None
    loaders: RequestLoaders
    principal: Principal | None = None
    # The id the HTTP request's log lines carry (server/telemetry.py), if it has one.
    request_id: str = field(
        default_factory=lambda: log_context.current().get("request_id") or uuid.uuid4().hex[:16]
    )
    # Set by Strawberry from the websocket `connection_init` payload.
    connection_params: dict[str, Any] | None = None
    # Websocket subscriptions, by the task that runs each (see resolvers/subscriptions.py).
    direct_senders: dict[Any, DirectSender] = field(default_factory=dict)

    @property
    def database(self) -> Database:
        return self.services.database

    @property
    def output_shapes(self) -> Lru[tuple[str, str], OutputSchema]:
        return self.services.output_shapes

    def workspace_role(self, workspace_id: str) -> str | None:
        """The caller's role in the workspace; None when they are not a member."""
        role = None if self.principal is None else self.principal.role_in(workspace_id)
        return None if role is None else role.value

    def is_caller(self, user_id: str) -> bool:
        """Whether `user_id` is the authenticated caller."""
        return self.principal is not None and self.principal.user_id == user_id

    def viewer(self) -> Principal:
        """The authenticated caller; every operation requires one."""
        if self.principal is None:
            raise RequestError("authentication required", UNAUTHENTICATED)
        return self.principal
