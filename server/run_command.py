"""`loom run WORKFLOW.json`: run a workflow file in this process, with no server or database.

The file is a JSON object shaped like GraphQL's `WorkflowInput` (`name`, `nodes`, `edges`,
optional `description`, `tags` and `settings`) plus an optional `input` object, the run's
input when `--input` is not given. HTTP Request nodes send their requests through the same
guarded client as the server, and Code nodes run in a sandbox with the same limits, under
the same settings (`server.run_resources`); a node that needs what only the server has
(credentials, other workflows) fails saying so. The run shows node-by-node progress on the
console, prints the final output as JSON on stdout, and ends with an exit code:

    0  the execution SUCCEEDED
    1  it FAILED or was CANCELLED
    2  the file or the input cannot be used (every problem is listed, with node and field)

`load_workflow_file` and `execute` are the two halves `run_workflow_file` joins; the examples'
tests call them directly to check outcomes.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from engine import json_depth
from engine.events import ErrorInfo, Event, EventType, Record
from engine.executor import DEFAULT_MAX_CONCURRENCY, Executor, Outcome, RunOptions, RunRequest
from engine.expressions.budget import DEFAULT_LIMITS, ExpressionLimits
from engine.graph import Edge, Graph, Node, OnError, Position, RetryPolicy
from engine.node_type_policy import PolicySnapshot
from engine.node_types import NodeTypeRegistry, load_registry
from engine.nodes.base import Item, NodeResources, RunInfo
from engine.output_limit import DEFAULT_MAX_NODE_OUTPUT_BYTES
from engine.plan import Plan, PlanError, compile_plan
from engine.settings import settings_problems
from engine.states import ExecutionStatus
from engine.validation import Problem
from engine.validation.text import show
from server.run_resources import file_run_resources
from server.settings import Settings

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

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


class WorkflowFileError(Exception):
    """The file or the input cannot run: `problems` lists why, each with node and field."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


@dataclass(frozen=True, slots=True)
class WorkflowFile:
    """A workflow file read, validated and compiled, with the input to run it on."""

    path: Path
    name: str
    plan: Plan
    settings: dict[str, Any]
    input: Item


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Reader:
    """Reads the file's JSON into a graph, collecting a problem for every malformed field.

    The API's GraphQL types check these shapes there; here the JSON is untyped. A malformed
    field is replaced by its default, and a node without an id or an edge that is not an
    object is left out, so that validation can still report everything else.
    """

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
        self.problems.append(Problem("INVALID_FILE", message, node_id, field))

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
            self.add(f"the file must hold a JSON object, got {show(data)}", "")
            return "", {}, Graph()
        self.unknown_keys(data, WORKFLOW_KEYS, "", None)
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
        if not isinstance(nodes_json, list) or not nodes_json:
            self.add(f"nodes must be a non-empty list, got {show(nodes_json)}", "nodes")
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


def _input_object(text: str) -> Item:
    try:
        value = json_depth.loads(text)
    except json_depth.JsonTooDeep as exc:
        raise WorkflowFileError(f"--input is {exc}") from exc
    except ValueError as exc:
        raise WorkflowFileError(f"--input is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise WorkflowFileError(f"--input must be a JSON object, got {show(value)}")
    return value


def load_workflow_file(
    path: str | Path,
    input_json: str | None = None,
    registry: NodeTypeRegistry | None = None,
    disabled_node_types: Iterable[str] = (),
) -> WorkflowFile:
    """Read, validate and compile a workflow file; `WorkflowFileError` says what is wrong.

    `input_json` (the `--input` option) overrides the file's `input`; with neither, the run's
    input is an empty object. A node of a type in `disabled_node_types` (the server's
    `LOOM_DISABLED_NODE_TYPES`) is a problem, as on the server.
    """
    path = Path(path)
    run_input = _input_object(input_json) if input_json is not None else None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise WorkflowFileError(f"{path} is not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # nested past what Python's parser reads
        raise WorkflowFileError(f"{path} is nested too deeply to read") from exc
    reader = _Reader()
    name, settings, graph = reader.workflow(data)
    if run_input is None:
        file_input = data.get("input", {}) if isinstance(data, dict) else {}
        if not isinstance(file_input, dict):
            reader.add(f"input must be a JSON object, got {show(file_input)}", "input")
            file_input = {}
        elif json_depth.nests_deeper(file_input):
            reader.add(f"input is {json_depth.JsonTooDeep()}", "input")
            file_input = {}
        run_input = file_input
    problems = reader.problems
    policy = PolicySnapshot(setting=frozenset(disabled_node_types))
    problems += [reader.in_file(p) for p in policy.problems(graph.nodes_to_json(), None)]
    try:
        plan = compile_plan(f"file:{path}", graph, registry or load_registry())
    except PlanError as exc:
        # A field the reader already complained about is not reported twice.
        reported = {(problem.node_id, problem.field) for problem in problems}
        problems += [
            reader.in_file(problem)
            for problem in exc.problems
            if (problem.node_id, problem.field) not in reported
        ]
    if problems:
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        raise WorkflowFileError(f"{path} is not a valid workflow ({count})", problems)
    return WorkflowFile(path=path, name=name, plan=plan, settings=settings, input=run_input)


async def execute(
    workflow: WorkflowFile,
    executor: Executor,
    resources: NodeResources | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_node_output_bytes: int | None = DEFAULT_MAX_NODE_OUTPUT_BYTES,
    *,
    expression_limits: ExpressionLimits = DEFAULT_LIMITS,
) -> Outcome:
    """Run the workflow once, in this process, honouring `settings.executionTimeoutSeconds`;
    nodes that reach out (HTTP Request) use `resources`."""
    execution_id = str(uuid.uuid4())
    timeout_s = workflow.settings.get("executionTimeoutSeconds")
    request = RunRequest(
        execution_id=execution_id,
        plan=workflow.plan,
        info=RunInfo(
            execution_id=execution_id,
            mode="manual",
            workflow_id=str(workflow.path),
            workflow_name=workflow.name,
            workflow_version=1,
            now=datetime.now(UTC).isoformat(),
        ),
        input=workflow.input,
    )
    options = RunOptions(
        max_concurrency=max_concurrency,
        execution_timeout_s=float(timeout_s) if timeout_s else None,
        resources=resources,
        max_node_output_bytes=max_node_output_bytes,
        expression_limits=expression_limits,
    )
    return await executor.run(request, options)


async def _execute_with_resources(
    workflow: WorkflowFile, executor: Executor, settings: Settings
) -> Outcome:
    resources = file_run_resources(settings)
    try:
        return await execute(
            workflow,
            executor,
            resources,
            settings.max_node_concurrency,
            settings.max_node_output_bytes,
            expression_limits=settings.expression_limits(),
        )
    finally:
        await resources.close()


# How each node event is shown: status word, colour, mark.
_SHOWN: dict[EventType, tuple[str, str, str]] = {
    EventType.NODE_STARTED: ("running", "yellow", "▶"),
    EventType.NODE_SUCCEEDED: ("succeeded", "green", "✓"),
    EventType.NODE_RETRYING: ("retrying", "yellow", "↻"),
    EventType.NODE_FAILED: ("failed", "red", "✗"),
    EventType.NODE_SKIPPED: ("skipped", "grey50", "-"),
    EventType.NODE_CANCELLED: ("cancelled", "magenta", "■"),
}
_STATUS_WIDTH = max(len(status) for status, _, _ in _SHOWN.values())


def _items(count: int | None) -> str:
    return "" if count is None else f"{count} item" + ("" if count == 1 else "s")


class ConsoleRecorder:
    """A recorder that prints one line per node event as the run proceeds (nothing when
    `quiet`); it stores nothing, since a file run has no database to record into."""

    def __init__(self, console: Console, plan: Plan, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.nodes = {node_id: plan_node.node for node_id, plan_node in plan.nodes.items()}
        self.name_width = max((len(node.name) for node in self.nodes.values()), default=0)

    def emit(self, record: Record) -> None:
        event = record.event
        shown = _SHOWN.get(event.type)
        if self.quiet or shown is None or event.node_id is None:
            return
        status, colour, mark = shown
        node = self.nodes[event.node_id]
        line = Text()
        line.append(f"{mark} ", style=colour)
        line.append(node.name.ljust(self.name_width), style="bold")
        if event.type is EventType.NODE_SKIPPED:
            line.append(f"  {status}", style=colour)
        else:
            line.append(f"  {status.ljust(_STATUS_WIDTH)}", style=colour)
            line.append(f"  attempt {event.attempt}", style="dim")
        line.append_text(self._details(event, node))
        self.console.print(line, highlight=False, soft_wrap=True)
        printed = record.node_run.console if record.node_run is not None else None
        if printed is not None and event.type in (EventType.NODE_SUCCEEDED, EventType.NODE_FAILED):
            for text in printed.lines:
                self.console.print(Text(f"    │ {text}", style="dim"), highlight=False)
            if printed.truncated:
                self.console.print(Text("    │ (more output was cut)", style="dim"))
        if event.error is not None:
            error_style = "yellow" if event.type is EventType.NODE_RETRYING else "red"
            self.console.print(
                Text(f"    {event.error.type}: {event.error.message}", style=error_style),
                highlight=False,
                soft_wrap=True,
            )

    @staticmethod
    def _details(event: Event, node: Node) -> Text:
        details = Text()
        if event.duration_ms is not None and event.type is not EventType.NODE_SKIPPED:
            details.append(f"  {event.duration_ms:.1f} ms")
        if event.type is EventType.NODE_STARTED:
            details.append(f"  {_items(event.input_items)} in")
        elif event.output_items is not None:
            details.append(f"  {_items(event.input_items)} -> {_items(event.output_items)}")
        if node.disabled and event.type is EventType.NODE_SUCCEEDED:
            details.append("  (disabled: passed through)", style="dim")
        if event.type is EventType.NODE_FAILED and node.on_error is not OnError.STOP:
            where = "error output" if node.on_error is OnError.ERROR_OUTPUT else "main output"
            details.append(f"  (error sent on to the {where})", style="dim")
        return details

    async def flush(self) -> None:
        return None

    async def throttle(self) -> None:
        return None


def _print_problems(console: Console, error: WorkflowFileError) -> None:
    console.print(
        Text(f"error: {error.message}", style="bold red"), highlight=False, soft_wrap=True
    )
    for problem in error.problems:
        line = Text("  - ")
        if problem.node_id:
            line.append(f"node {problem.node_id!r}", style="bold")
            line.append(f" {problem.field}" if problem.field else "")
        else:
            line.append(problem.field or "workflow", style="bold")
        line.append(f": {problem.message} [{problem.code}]")
        console.print(line, highlight=False, soft_wrap=True)


def _print_end(
    console: Console, status: ExecutionStatus, elapsed_s: float, error: ErrorInfo | None
) -> None:
    colour = "green" if status is ExecutionStatus.SUCCEEDED else "red"
    console.print(
        Text(f"{status.value} in {elapsed_s * 1000:.0f} ms", style=f"bold {colour}"),
        highlight=False,
    )
    if error is not None:
        console.print(
            Text(f"{error.type}: {error.message}", style="red"), highlight=False, soft_wrap=True
        )


def run_workflow_file(
    path: str | Path,
    input_json: str | None,
    console: Console,
    *,
    quiet: bool = False,
    output: TextIO | None = None,
    settings: Settings | None = None,
) -> int:
    """Run a workflow file as `loom run` does and return the exit code.

    Progress and errors go to `console`; the final output goes to `output` (stdout) as JSON.
    With `quiet`, node-by-node progress is left out. `settings` (read from the environment
    when not given) are the server's: HTTP Request nodes are guarded by the same
    `LOOM_HTTP_ALLOWED_NETWORKS`, Code nodes run under the same `LOOM_CODE_*` limits, and
    the types of `LOOM_DISABLED_NODE_TYPES` do not run.
    """
    settings = settings or Settings()
    try:
        workflow = load_workflow_file(
            path, input_json, disabled_node_types=settings.disabled_node_types
        )
    except WorkflowFileError as exc:
        _print_problems(console, exc)
        return EXIT_INVALID
    recorder = ConsoleRecorder(console, workflow.plan, quiet=quiet)
    started = time.perf_counter()
    try:
        outcome = asyncio.run(_execute_with_resources(workflow, Executor(recorder), settings))
    except KeyboardInterrupt:
        # asyncio.run cancelled the run on Ctrl-C, and the executor recorded the cancellation.
        _print_end(console, ExecutionStatus.CANCELLED, time.perf_counter() - started, None)
        return EXIT_FAILED
    if outcome.status is not ExecutionStatus.SUCCEEDED:
        _print_end(console, outcome.status, time.perf_counter() - started, outcome.error)
        return EXIT_FAILED
    if not quiet:
        _print_end(console, outcome.status, time.perf_counter() - started, None)
    stream = output or sys.stdout
    stream.write(json.dumps(outcome.output, indent=2, ensure_ascii=False) + "\n")
    stream.flush()
    return EXIT_SUCCEEDED
