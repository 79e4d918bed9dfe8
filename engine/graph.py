"""The workflow graph as plain, immutable dataclasses.

A graph is what the frontend draws: nodes joined by edges between named ports. This module
holds no behaviour beyond conversion to and from the JSON stored in the database; validation
lives in `engine.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DEFAULT_PORT = "main"
# Where a node whose onError is ERROR_OUTPUT sends its error item, whatever its type.
ERROR_PORT = "error"

JSONObject = dict[str, Any]


class OnError(StrEnum):
    """What a node does once its retries are used up."""

    STOP = "STOP"
    CONTINUE = "CONTINUE"
    ERROR_OUTPUT = "ERROR_OUTPUT"


@dataclass(frozen=True, slots=True)
class Position:
    """Where the node sits on the canvas; meaningless to the engine."""

    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a node is retried after a retryable error, and how long it waits between."""

    max_attempts: int = 1
    backoff_s: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a workflow: an instance of a node type with its parameters."""

    id: str
    name: str
    type: str
    type_version: int | None = None
    parameters: JSONObject = field(default_factory=dict)
    position: Position = field(default_factory=Position)
    disabled: bool = False
    notes: str = ""
    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    on_error: OnError = OnError.STOP
    credentials: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> JSONObject:
        """The node as stored in the database and in version snapshots."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "typeVersion": self.type_version,
            "parameters": self.parameters,
            "position": {"x": self.position.x, "y": self.position.y},
            "disabled": self.disabled,
            "notes": self.notes,
            "retry": None
            if self.retry is None
            else {
                "maxAttempts": self.retry.max_attempts,
                "backoffSeconds": self.retry.backoff_s,
                "backoffFactor": self.retry.backoff_factor,
                "maxBackoffSeconds": self.retry.max_backoff_s,
            },
            "timeoutSeconds": self.timeout_s,
            "onError": self.on_error.value,
            "credentials": self.credentials,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Node:
        """Rebuild a node from `to_json` output (trusted, already validated data)."""
        position = data.get("position") or {}
        retry = data.get("retry")
        return cls(
            id=data["id"],
            name=data["name"],
            type=data["type"],
            type_version=data.get("typeVersion"),
            parameters=dict(data.get("parameters") or {}),
            position=Position(x=position.get("x", 0.0), y=position.get("y", 0.0)),
            disabled=bool(data.get("disabled", False)),
            notes=data.get("notes") or "",
            retry=None
            if retry is None
            else RetryPolicy(
                max_attempts=retry["maxAttempts"],
                backoff_s=retry["backoffSeconds"],
                backoff_factor=retry["backoffFactor"],
                max_backoff_s=retry["maxBackoffSeconds"],
            ),
            timeout_s=data.get("timeoutSeconds"),
            on_error=OnError(data.get("onError", OnError.STOP.value)),
            credentials=dict(data.get("credentials") or {}),
        )


@dataclass(frozen=True, slots=True)
class Edge:
    """A connection from one node's output port to another node's input port."""

    source: str
    target: str
    source_output: str = DEFAULT_PORT
    target_input: str = DEFAULT_PORT

    def to_json(self) -> JSONObject:
        """The edge as stored in the database and in version snapshots."""
        return {
            "source": self.source,
            "sourceOutput": self.source_output,
            "target": self.target,
            "targetInput": self.target_input,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Edge:
        """Rebuild an edge from `to_json` output."""
        return cls(
            source=data["source"],
            target=data["target"],
            source_output=data.get("sourceOutput", DEFAULT_PORT),
            target_input=data.get("targetInput", DEFAULT_PORT),
        )


@dataclass(frozen=True, slots=True)
class Graph:
    """A whole workflow graph. Node order is the order the user gave, and is kept."""

    nodes: tuple[Node, ...] = ()
    edges: tuple[Edge, ...] = ()

    def node(self, node_id: str) -> Node | None:
        """The node with this id, or None."""
        return next((node for node in self.nodes if node.id == node_id), None)

    def nodes_to_json(self) -> list[JSONObject]:
        return [node.to_json() for node in self.nodes]

    def edges_to_json(self) -> list[JSONObject]:
        return [edge.to_json() for edge in self.edges]

    @classmethod
    def from_json(cls, nodes: list[JSONObject], edges: list[JSONObject]) -> Graph:
        """Rebuild a graph from the stored JSON lists."""
        return cls(
            nodes=tuple(Node.from_json(node) for node in nodes),
            edges=tuple(Edge.from_json(edge) for edge in edges),
        )
