"""A workflow's JSON read into a graph, every malformed field a problem with its path.

Shared by `loom run` (a workflow file) and workflow documents (`engine.workflow_document`,
export and import): both read untyped JSON in the shape the graph is stored in
(`Graph.to_json`), and name what is wrong as `nodes[3].type` or a node and its field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.graph import Edge, Graph, Node, OnError, Position, RetryPolicy
from engine.settings import settings_problems
from engine.validation import Problem
from engine.validation.text import show

# The fields of a `loom run` file: a workflow, and the input to run it on.
WORKFLOW_KEYS = frozenset({"name", "description", "tags", "settings", "nodes", "edges", "input"})
NODE_KEYS = frozenset(
    {
        "id",
        "name",
        "type",
        "typeVersion",
        "parameters",
        "position",
        "disabled",
        "notes",
        "retry",
        "timeoutSeconds",
        "onError",
        "credentials",
    }
)
EDGE_KEYS = frozenset({"source", "sourceOutput", "target", "targetInput"})
_INDEXED_FIELD = re.compile(r"^(nodes|edges)\[(\d+)\]")
# The defaults of GraphQL's RetryPolicyInput, so a file and the API mean the same thing.
RETRY_DEFAULTS: dict[str, int | float] = {
    "maxAttempts": 3,
    "backoffSeconds": 1.0,
    "backoffFactor": 2.0,
    "maxBackoffSeconds": 60.0,
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class WorkflowReader:
    """Reads a workflow's JSON into a graph, collecting a problem for every malformed field.

    The API's GraphQL types check these shapes there; here the JSON is untyped. A malformed
    field is replaced by its default, and a node without an id or an edge that is not an
    object is left out, so that validation can still report everything else.

    `loom run` reads its files with it as it is; a workflow document
    (`engine.workflow_document`) gives its own problem code, top-level fields and
    credential references.
    """

    # The code of every problem the reader finds, the top-level fields it knows, and what
    # the whole is called in messages.
    problem_code = "INVALID_FILE"
    workflow_keys = WORKFLOW_KEYS
    whole = "the file"
    nodes_required = True

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        # The position in the file of each node and edge of the graph, which leaves some out.
        self.file_index: dict[str, list[int]] = {"nodes": [], "edges": []}

    def in_file(self, problem: Problem) -> Problem:
        """A validation problem with `nodes[i]`/`edges[i]` counted as in the file."""
        match = _INDEXED_FIELD.match(problem.field or "")
        if match is None:
            return problem
        kind, index = match.group(1), int(match.group(2))
        field = f"{kind}[{self.file_index[kind][index]}]" + (problem.field or "")[match.end() :]
        return replace(problem, field=field)

    def add(self, message: str, field: str, node_id: str | None = None) -> None:
        self.problems.append(Problem(self.problem_code, message, node_id, field))

    def unknown_keys(
        self, data: Mapping[str, Any], known: frozenset[str], where: str, node_id: str | None
    ) -> None:
        for key in sorted(set(data) - known):
            field = f"{where}.{key}" if where else key
            self.add(f"unknown field {key!r} (known: {', '.join(sorted(known))})", field, node_id)

    def node(self, index: int, data: Any) -> Node | None:
        where = f"nodes[{index}]"
        if not isinstance(data, dict):
            self.add(f"a node must be a JSON object, got {show(data)}", where)
            return None
        node_id = data.get("id")
        if isinstance(node_id, int) and not isinstance(node_id, bool):
            node_id = str(node_id)  # GraphQL IDs accept numbers too
        if not isinstance(node_id, str) or not node_id.strip():
            self.add(f"id must be non-empty text, got {show(node_id)}", f"{where}.id")
            return None
        # Problems name the node and a field inside it, as validation's do.
        self.unknown_keys(data, NODE_KEYS, "", node_id)

        def text(key: str, *, required: bool) -> str:
            value = data.get(key)
            if isinstance(value, str):
                return value
            if value is not None or required:
                self.add(f"{key} must be text, got {show(value)}", key, node_id)
            return ""

        def number(key: str) -> float | None:
            value = data.get(key)
            if value is None or _is_number(value):
                return value
            self.add(f"{key} must be a number, got {show(value)}", key, node_id)
            return None

        type_version = data.get("typeVersion")
        if type_version is not None and (
            isinstance(type_version, bool) or not isinstance(type_version, int)
        ):
            self.add(
                f"typeVersion must be a whole number, got {show(type_version)}",
                "typeVersion",
                node_id,
            )
            type_version = None
        parameters = data.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            self.add("parameters must be a JSON object", "parameters", node_id)
            parameters = None
        disabled = data.get("disabled")
        if disabled is not None and not isinstance(disabled, bool):
            self.add(f"disabled must be true or false, got {show(disabled)}", "disabled", node_id)
            disabled = None
        on_error = data.get("onError")
        if on_error is not None and on_error not in OnError.__members__:
            allowed = ", ".join(OnError.__members__)
            self.add(
                f"onError must be one of {allowed}, got {show(on_error)}",
                "onError",
                node_id,
            )
            on_error = None
        return Node(
            id=node_id,
            name=text("name", required=True),
            type=text("type", required=True),
            type_version=type_version,
            parameters=parameters or {},
            position=self.position(data.get("position"), node_id),
            disabled=bool(disabled),
            notes=text("notes", required=False),
            retry=self.retry(data.get("retry"), node_id),
            timeout_s=number("timeoutSeconds"),
            on_error=OnError(on_error or OnError.STOP),
            credentials=self.credentials(data.get("credentials"), node_id),
        )

    def position(self, data: Any, node_id: str) -> Position:
        if data is None:
            return Position()
        if isinstance(data, dict) and all(_is_number(data.get(axis, 0)) for axis in "xy"):
            return Position(x=data.get("x", 0.0), y=data.get("y", 0.0))
        self.add("position must be an object of numbers x and y", "position", node_id)
        return Position()

    def retry(self, data: Any, node_id: str) -> RetryPolicy | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            self.add(f"retry must be a JSON object, got {show(data)}", "retry", node_id)
            return None
        self.unknown_keys(data, frozenset(RETRY_DEFAULTS), "retry", node_id)
        values: dict[str, Any] = dict(RETRY_DEFAULTS)
        for key in RETRY_DEFAULTS:
            value = data.get(key)
            if value is None:
                continue
            if _is_number(value):
                values[key] = value
            else:
                self.add(f"{key} must be a number, got {show(value)}", f"retry.{key}", node_id)
        # Validation checks the values (a whole number of attempts, the bounds).
        return RetryPolicy(
            max_attempts=values["maxAttempts"],
            backoff_s=values["backoffSeconds"],
            backoff_factor=values["backoffFactor"],
            max_backoff_s=values["maxBackoffSeconds"],
        )

    def credentials(self, data: Any, node_id: str) -> dict[str, str]:
        if data is None:
            return {}
        if isinstance(data, dict) and all(isinstance(value, str) for value in data.values()):
            return data
        self.add(
            "credentials must map credential kinds to credential ids (text)",
            "credentials",
            node_id,
        )
        return {}

    def edge(self, index: int, data: Any) -> Edge | None:
        where = f"edges[{index}]"
        if not isinstance(data, dict):
            self.add(f"an edge must be a JSON object, got {show(data)}", where)
            return None
        self.unknown_keys(data, EDGE_KEYS, where, None)
        ends: dict[str, str] = {}
        for key, default in (
            ("source", None),
            ("target", None),
            ("sourceOutput", "main"),
            ("targetInput", "main"),
        ):
            value = data.get(key, default)
            if isinstance(value, int) and not isinstance(value, bool) and default is None:
                value = str(value)
            if not isinstance(value, str):
                self.add(f"{key} must be text, got {show(value)}", f"{where}.{key}")
                value = default or ""
            ends[key] = value
        return Edge(
            source=ends["source"],
            target=ends["target"],
            source_output=ends["sourceOutput"],
            target_input=ends["targetInput"],
        )

    def workflow(self, data: Any) -> tuple[str, dict[str, Any], Graph]:
        """The workflow's name, settings and graph."""
        if not isinstance(data, dict):
            self.add(f"{self.whole} must hold a JSON object, got {show(data)}", "")
            return "", {}, Graph()
        self.unknown_keys(data, self.workflow_keys, "", None)
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            self.add(f"name must be non-empty text, got {show(name)}", "name")
            name = ""
        description, tags = data.get("description"), data.get("tags")
        if description is not None and not isinstance(description, str):
            self.add(f"description must be text, got {show(description)}", "description")
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
        ):
            self.add(f"tags must be a list of text, got {show(tags)}", "tags")
        settings = data.get("settings") or {}
        for field, message in settings_problems(settings):
            self.problems.append(Problem("INVALID_SETTINGS", message, None, field))
        nodes_json = data.get("nodes")
        if not isinstance(nodes_json, list) or (self.nodes_required and not nodes_json):
            wanted = "a non-empty list" if self.nodes_required else "a list"
            self.add(f"nodes must be {wanted}, got {show(nodes_json)}", "nodes")
            nodes_json = []
        edges_json = data.get("edges", [])
        if not isinstance(edges_json, list):
            self.add(f"edges must be a list, got {show(edges_json)}", "edges")
            edges_json = []
        nodes: list[Node] = []
        for index, node_json in enumerate(nodes_json):
            if (node := self.node(index, node_json)) is not None:
                nodes.append(node)
                self.file_index["nodes"].append(index)
        edges: list[Edge] = []
        for index, edge_json in enumerate(edges_json):
            if (edge := self.edge(index, edge_json)) is not None:
                edges.append(edge)
                self.file_index["edges"].append(index)
        graph = Graph(nodes=tuple(nodes), edges=tuple(edges))
        return name, settings if isinstance(settings, dict) else {}, graph
