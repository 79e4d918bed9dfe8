"""Webhook routes: which active workflow answers a method and path."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.nodes.webhook import RESPOND, WEBHOOK, webhook_methods, webhook_path
from storage.errors import StorageError
from storage.models import WebhookRoute, Workflow, WorkflowVersion


class PathTakenError(StorageError):
    """Another workflow answers this method and path (whose, is not said)."""

    def __init__(self, method: str, path: str, node_id: str) -> None:
        super().__init__(f"{method} /webhook/{path} is already in use")
        self.method = method
        self.path = path
        self.node_id = node_id


@dataclass(frozen=True, slots=True)
class Route:
    workflow_id: str
    workspace_id: str
    # The workflow's settings (its draft's, like every run's admission): a `WorkflowRef`.
    settings: dict[str, Any]
    workflow_version_id: str
    workflow_version: int
    node_id: str
    parameters: dict[str, Any]
    credentials: dict[str, str]
    # The version's Respond to Webhook nodes.
    respond_node_ids: frozenset[str]
    # What a run of the version needs (`engine.ports.RunnableVersion`): embedded mode
    # starts it from here without reading the snapshot again.
    workflow_name: str = ""
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    version_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The workflow's id (with `workspace_id` and `settings`, a `WorkflowRef`)."""
        return self.workflow_id


class RouteCache:
    """Routes found by `lookup`, by (method, path), for `ttl_s` seconds: a webhook request
    then costs no query for its route. This process clears it whenever it changes routes
    (activation, publication, deletion); changes made by other API processes are seen within
    `ttl_s`. A lookup that began before a clear is not cached (the generation moved on)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self._routes: dict[tuple[str, str], tuple[float, Route]] = {}

    def get(self, method: str, path: str) -> Route | None:
        found = self._routes.get((method, path))
        if found is None:
            return None
        expires, route = found
        if time.monotonic() >= expires:
            del self._routes[(method, path)]
            return None
        return route

    def put(self, method: str, path: str, route: Route, generation: int) -> None:
        if self.ttl_s <= 0 or generation != self.generation:
            return
        if len(self._routes) >= self.max_entries:
            self._routes.clear()
        self._routes[(method, path)] = (time.monotonic() + self.ttl_s, route)

    def clear(self) -> None:
        self.generation += 1
        self._routes.clear()


async def register(session: AsyncSession, workflow: Workflow, version: WorkflowVersion) -> None:
    """Route the webhook triggers of `version` (replacing the workflow's earlier routes);
    raises `PathTakenError` if another workflow has one of the paths."""
    await unregister(session, workflow.id)
    for node in version.nodes:
        if node.get("type") != WEBHOOK or node.get("disabled"):
            continue
        parameters = dict(node.get("parameters") or {})
        path = webhook_path(workflow.id, node["id"], parameters)
        for method in webhook_methods(parameters):
            taken = await session.get(WebhookRoute, (method, path))
            if taken is not None:
                raise PathTakenError(method, path, node["id"])
            session.add(
                WebhookRoute(
                    method=method,
                    path=path,
                    workflow_id=workflow.id,
                    workflow_version_id=version.id,
                    node_id=node["id"],
                )
            )
            await session.flush()


async def unregister(session: AsyncSession, workflow_id: str) -> None:
    await session.exec(delete(WebhookRoute).where(col(WebhookRoute.workflow_id) == workflow_id))


async def lookup(session: AsyncSession, method: str, path: str) -> Route | None:
    """The route of an active workflow for this method and path."""
    query = (
        select(  # type: ignore[call-overload]
            WebhookRoute,
            Workflow.workspace_id,
            Workflow.settings,
            WorkflowVersion.version,
            WorkflowVersion.nodes,
            Workflow.name,
            WorkflowVersion.edges,
            WorkflowVersion.settings,
        )
        .join(Workflow, col(Workflow.id) == col(WebhookRoute.workflow_id))
        .join(WorkflowVersion, col(WorkflowVersion.id) == col(WebhookRoute.workflow_version_id))
        .where(
            WebhookRoute.method == method,
            WebhookRoute.path == path,
            col(Workflow.active).is_(True),
        )
    )
    found = (await session.exec(query)).first()
    if found is None:
        return None
    route, workspace_id, settings, version, nodes, name, edges, version_settings = found
    node: dict[str, Any] = next((n for n in nodes if n.get("id") == route.node_id), {})
    return Route(
        workflow_id=route.workflow_id,
        workspace_id=workspace_id,
        settings=dict(settings or {}),
        workflow_version_id=route.workflow_version_id,
        workflow_version=version,
        node_id=route.node_id,
        parameters=dict(node.get("parameters") or {}),
        credentials=dict(node.get("credentials") or {}),
        respond_node_ids=frozenset(n["id"] for n in nodes if n.get("type") == RESPOND),
        workflow_name=name,
        nodes=nodes,
        edges=edges,
        version_settings=dict(version_settings or {}),
    )
