"""GraphQL inputs turned into engine objects, collecting every problem on the way."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.graph import Edge, Graph, Node, OnError, Position, RetryPolicy
from engine.settings import settings_problems
from engine.workflow_fields import (
    MAX_NOTES,
    Collected,
    checked_texts,
)
from schema.inputs import EdgeInput, NodeInput, WorkflowInput


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def node_from_input(node_input: NodeInput, collected: Collected, field_path: str) -> Node:
    node_id = str(node_input.id)
    parameters: Any = node_input.parameters if node_input.parameters is not None else {}
    if not isinstance(parameters, dict):
        collected.add(
            "INVALID_PARAMETERS",
            "parameters must be a JSON object",
            f"{field_path}.parameters",
            node_id,
        )
        parameters = {}
    credentials: Any = node_input.credentials if node_input.credentials is not None else {}
    if not isinstance(credentials, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in credentials.items()
    ):
        collected.add(
            "INVALID_CREDENTIALS",
            "credentials must map credential kinds to credential ids (strings)",
            f"{field_path}.credentials",
            node_id,
        )
        credentials = {}
    notes = node_input.notes or ""
    if len(notes) > MAX_NOTES:
        collected.add(
            "NOTES_TOO_LONG", f"notes exceed {MAX_NOTES} characters", f"{field_path}.notes", node_id
        )
    position = node_input.position
    if position is not None and not (_finite(position.x) and _finite(position.y)):
        collected.add(
            "INVALID_POSITION", "position must be finite numbers", f"{field_path}.position", node_id
        )
    retry = node_input.retry
    timeout = node_input.timeout_seconds
    if retry is not None and not all(
        _finite(v) for v in (retry.backoff_seconds, retry.backoff_factor, retry.max_backoff_seconds)
    ):
        collected.add(
            "INVALID_RETRY", "retry values must be finite", f"{field_path}.retry", node_id
        )
    return Node(
        id=node_id,
        name=node_input.name,
        type=node_input.type,
        type_version=node_input.type_version,
        parameters=parameters,
        position=Position(position.x, position.y) if position is not None else Position(),
        disabled=bool(node_input.disabled),
        notes=notes,
        retry=None
        if retry is None
        else RetryPolicy(
            max_attempts=retry.max_attempts,
            backoff_s=retry.backoff_seconds,
            backoff_factor=retry.backoff_factor,
            max_backoff_s=retry.max_backoff_seconds,
        ),
        timeout_s=timeout,
        on_error=OnError(node_input.on_error.name) if node_input.on_error else OnError.STOP,
        credentials=credentials,
    )


def edge_from_input(edge_input: EdgeInput) -> Edge:
    return Edge(
        source=str(edge_input.source),
        target=str(edge_input.target),
        source_output=edge_input.source_output,
        target_input=edge_input.target_input,
    )


@dataclass(slots=True)
class WorkflowFields:
    """A workflow input read into plain values."""

    name: str
    description: str
    tags: list[str]
    settings: dict[str, Any]
    graph: Graph


def workflow_from_input(workflow_input: WorkflowInput, collected: Collected) -> WorkflowFields:
    description = workflow_input.description or ""
    tags = checked_texts(collected, workflow_input.name, description, workflow_input.tags or [])
    settings: Any = workflow_input.settings if workflow_input.settings is not None else {}
    for field_path, message in settings_problems(settings):
        collected.add("INVALID_SETTINGS", message, field_path)
    nodes = tuple(
        node_from_input(node_input, collected, f"nodes[{index}]")
        for index, node_input in enumerate(workflow_input.nodes)
    )
    edges = tuple(edge_from_input(edge_input) for edge_input in workflow_input.edges)
    return WorkflowFields(
        name=workflow_input.name.strip(),
        description=description,
        tags=tags,
        settings=settings if isinstance(settings, dict) else {},
        graph=Graph(nodes=nodes, edges=edges),
    )
