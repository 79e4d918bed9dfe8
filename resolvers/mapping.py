"""Storage rows and engine objects mapped to schema types."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from sqlalchemy import inspect
from strawberry.scalars import JSON

from engine.declarative import definition_of
from engine.events import Event
from engine.node_type_policy import EMPTY, PolicySnapshot
from engine.node_types import NodeType as EngineNodeType
from engine.node_types import NodeTypeLookup
from engine.nodes.webhook import WEBHOOK, webhook_methods, webhook_path
from schema import execution_types as xtypes
from schema import types
from schema.sharing import Shareable
from storage import models

_EMPTY: dict[str, Any] = {}


def _json(value: Any) -> JSON:
    return cast(JSON, value)


def problem(data: dict[str, Any]) -> types.Problem:
    node_id = data.get("nodeId")
    return types.Problem(
        code=data["code"],
        message=data["message"],
        node_id=None if node_id is None else strawberry.ID(node_id),
        field=data.get("field"),
        severity=types.ProblemSeverity(data.get("severity", "STRUCTURAL")),
    )


def node(
    data: dict[str, Any],
    issues: list[dict[str, Any]] | None,
    workflow_id: str = "",
    pinned: list[dict[str, Any]] | types.NotRead | None = None,
) -> types.Node:
    position = data.get("position") or _EMPTY
    retry = data.get("retry")
    return types.Node(
        id=strawberry.ID(data["id"]),
        name=data["name"],
        type=data["type"],
        type_version=data.get("typeVersion"),
        parameters=_json(data.get("parameters") or {}),
        position=types.Position(x=position.get("x", 0.0), y=position.get("y", 0.0)),
        disabled=bool(data.get("disabled")),
        notes=data.get("notes") or "",
        retry=None
        if retry is None
        else types.RetryPolicy(
            max_attempts=retry["maxAttempts"],
            backoff_seconds=retry["backoffSeconds"],
            backoff_factor=retry["backoffFactor"],
            max_backoff_seconds=retry["maxBackoffSeconds"],
        ),
        timeout_seconds=data.get("timeoutSeconds"),
        on_error=types.OnError(data.get("onError", "STOP")),
        credentials=_json(data.get("credentials") or {}),
        issues=[problem(issue) for issue in issues] if issues else [],
        pins=pinned if pinned is None or isinstance(pinned, types.NotRead) else _json(pinned),
        workflow_id=workflow_id,
    )


def edge(data: dict[str, Any]) -> types.Edge:
    source, target = data["source"], data["target"]
    source_output, target_input = data["sourceOutput"], data["targetInput"]
    return types.Edge(
        id=strawberry.ID(f"{source}:{source_output}->{target}:{target_input}"),
        source=strawberry.ID(source),
        source_output=source_output,
        target=strawberry.ID(target),
        target_input=target_input,
    )


def workflow(row: models.Workflow, policy: PolicySnapshot = EMPTY) -> types.Workflow:
    """The draft with its stored node issues, and NODE_TYPE_DISABLED where `policy` (as it
    is now, not when the draft was saved) disables a node's type."""
    issues = row.node_issues
    # None: read without its pins (a list); nodes read them when asked (`Node.pinnedData`).
    pinned = None if "pinned_data" in inspect(row).unloaded else row.pinned_data
    disabled = policy.problems(row.nodes, row.workspace_id)
    if disabled:
        issues = {node_id: list(found) for node_id, found in issues.items()}
        for problem in disabled:
            issues.setdefault(problem.node_id or "", []).insert(0, problem.to_json())
    return types.Workflow(
        id=strawberry.ID(row.id),
        name=row.name,
        description=row.description,
        tags=list(row.tags),
        version=row.version,
        published_version=row.published_version,
        active=row.active,
        nodes=[
            node(
                data,
                issues.get(data["id"]),
                row.id,
                types.PINS_NOT_READ if pinned is None else pinned.get(data["id"]),
            )
            for data in row.nodes
        ],
        edges=[edge(data) for data in row.edges],
        settings=_json(row.settings),
        created_at=row.created_at,
        updated_at=row.updated_at,
        webhooks=[_webhook(row.id, data) for data in row.nodes if data.get("type") == WEBHOOK],
        workspace_id=row.workspace_id,
        created_by_id=row.created_by,
    )


def _webhook(workflow_id: str, data: dict[str, Any]) -> types.WebhookEndpoint:
    parameters = dict(data.get("parameters") or {})
    path = webhook_path(workflow_id, data["id"], parameters)
    return types.WebhookEndpoint(
        node_id=strawberry.ID(data["id"]),
        path=path,
        url_path=f"/webhook/{path}",
        methods=webhook_methods(parameters),
    )


def workflow_version(row: models.WorkflowVersion) -> types.WorkflowVersion:
    return types.WorkflowVersion(
        id=strawberry.ID(row.id),
        workflow_id=strawberry.ID(row.workflow_id),
        version=row.version,
        name=row.name,
        nodes=[
            node(data, None, row.workflow_id, row.pinned_data.get(data["id"])) for data in row.nodes
        ],
        edges=[edge(data) for data in row.edges],
        settings=_json(row.settings),
        created_at=row.created_at,
    )


def user(row: models.User) -> types.User:
    return types.User(
        id=strawberry.ID(row.id),
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        personal_workspace_id=row.personal_workspace_id,
    )


def workspace(row: models.Workspace) -> types.Workspace:
    return types.Workspace(id=strawberry.ID(row.id), name=row.name)


def api_token(row: models.ApiToken) -> types.ApiToken:
    return types.ApiToken(
        id=strawberry.ID(row.id),
        name=row.name,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        workspace_id=None if row.workspace_id is None else strawberry.ID(row.workspace_id),
        role=row.role,
    )


def node_type(descriptor: EngineNodeType, registry: NodeTypeLookup) -> types.NodeType:
    catalog = descriptor.catalog
    return types.NodeType(
        name=descriptor.name,
        version=descriptor.version,
        versions=registry.versions(descriptor.name),
        display_name=descriptor.display_name,
        description=descriptor.description,
        group=types.NodeGroup(descriptor.group.value),
        inputs=[
            types.Port(
                name=p.name, display_name=p.display_name or p.name, accepts_many=p.accepts_many
            )
            for p in descriptor.inputs
        ],
        outputs=[
            types.Port(name=p.name, display_name=p.display_name or p.name, accepts_many=True)
            for p in descriptor.outputs
        ],
        parameters_schema=_json(descriptor.parameters_schema),
        credential_kinds=list(descriptor.credential_kinds),
        category=catalog.category,
        subcategory=catalog.subcategory or None,
        icon=catalog.icon or None,
        documentation_url=catalog.documentation_url or None,
        subtitle=catalog.subtitle or None,
        parameter_hints=[
            types.ParameterHint(
                parameter=hint.parameter,
                placeholder=hint.placeholder or None,
                widget=types.ParameterWidget(hint.widget.value) if hint.widget else None,
                show_when=(
                    _json({name: list(values) for name, values in hint.show_when.items()})
                    if hint.show_when
                    else None
                ),
            )
            for hint in catalog.hints
        ],
        default_parameters=_json(descriptor.default_parameters()),
        deprecated=descriptor.deprecated,
        definition=_json(definition) if (definition := definition_of(descriptor)) else None,
    )


def _error(data: dict[str, Any] | None, kind: type[Any]) -> Any:
    if not data:
        return None
    return kind(
        type=data["type"], message=data["message"], details=_json(data.get("details") or {})
    )


def _execution_error(data: dict[str, Any] | None) -> xtypes.ExecutionError | None:
    if not data:
        return None
    node_id = data.get("nodeId")
    return xtypes.ExecutionError(
        type=data["type"],
        message=data["message"],
        details=_json(data.get("details") or {}),
        node_id=None if node_id is None else strawberry.ID(node_id),
        node_name=data.get("nodeName"),
    )


def _duration_ms(started_at: datetime | None, finished_at: datetime | None) -> float | None:
    if started_at is None or finished_at is None:
        return None
    return (finished_at - started_at).total_seconds() * 1000


class SharedExecution(xtypes.Execution, Shareable):
    """An execution whose status changed: one object for every `executionUpdates`
    subscriber of this process (see schema.sharing)."""


def shared_execution(row: models.Execution) -> xtypes.Execution:
    """An execution as `executionUpdates` sends it (built once per change, shared by all)."""
    return execution(row, SharedExecution)


def execution(
    row: models.Execution, kind: type[xtypes.Execution] = xtypes.Execution
) -> xtypes.Execution:
    duration = _duration_ms(row.started_at, row.finished_at)
    return kind(
        id=strawberry.ID(row.id),
        workflow_id=strawberry.ID(row.workflow_id),
        workflow_version=row.workflow_version,
        status=xtypes.ExecutionStatus(row.status),
        mode=row.mode,
        legacy_input=row.input,
        legacy_output=row.output,
        error=_execution_error(row.error),
        engine_version=row.engine_version,
        retry_of=None if row.retry_of is None else strawberry.ID(row.retry_of),
        destination_node_id=None
        if row.destination_node_id is None
        else strawberry.ID(row.destination_node_id),
        node_only=row.node_only,
        reused_from=None if row.reuse_from is None else strawberry.ID(row.reuse_from),
        parent_execution_id=(
            None if row.parent_execution_id is None else strawberry.ID(row.parent_execution_id)
        ),
        parent_node_id=None if row.parent_node_id is None else strawberry.ID(row.parent_node_id),
        call_depth=row.call_depth or 0,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_ms=duration,
    )


def node_run(row: models.NodeRun) -> xtypes.NodeRun:
    duration = _duration_ms(row.started_at, row.finished_at)
    return xtypes.NodeRun(
        id=strawberry.ID(row.id),
        node_id=strawberry.ID(row.node_id),
        node_name=row.node_name,
        status=xtypes.NodeRunStatus(row.status),
        attempt=row.attempt,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_ms=duration,
        input_items=row.input_items,
        output_items=row.output_items,
        error=_error(row.error, xtypes.NodeError),
        console=_console(row.console),
        source=xtypes.NodeRunSource(row.source or "RAN"),
    )


def _console(stored: dict[str, Any] | None) -> xtypes.ConsoleOutput | None:
    if stored is None:
        return None
    return xtypes.ConsoleOutput(
        lines=list(stored.get("lines") or []), truncated=bool(stored.get("truncated"))
    )


class SharedExecutionEvent(xtypes.ExecutionEvent, Shareable):
    """An event as `executionEvents` sends it: one object for every subscriber of this
    process that it goes to (see schema.sharing)."""


def event(value: Event) -> xtypes.ExecutionEvent:
    """A live event, as subscribers receive it (built once per event, shared by all)."""
    error = None if value.error is None else value.error.to_json()
    return _event(value, SharedExecutionEvent, error)


def event_row(row: models.ExecutionEventRow) -> xtypes.ExecutionEvent:
    """A stored event, as subscribers catching up receive it (shared by those that read it
    together)."""
    return _event(row, SharedExecutionEvent, row.error)


def _event(
    source: Event | models.ExecutionEventRow,
    kind: type[xtypes.ExecutionEvent],
    error: dict[str, Any] | None,
) -> xtypes.ExecutionEvent:
    return kind(
        execution_id=strawberry.ID(source.execution_id),
        sequence=source.sequence,
        type=xtypes.ExecutionEventType(str(source.type)),
        node_id=None if source.node_id is None else strawberry.ID(source.node_id),
        node_name=source.node_name,
        attempt=source.attempt,
        status=source.status,
        at=source.at,
        duration_ms=source.duration_ms,
        input_items=source.input_items,
        item_count=source.output_items,
        error=_error(error, xtypes.NodeError),
        preview=_json(source.preview),
    )
