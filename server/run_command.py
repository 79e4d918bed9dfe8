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
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from engine import json_depth
from engine.events import ErrorInfo, Event, EventType, Record
from engine.executor import DEFAULT_MAX_CONCURRENCY, Executor, Outcome, RunOptions, RunRequest
from engine.expressions.budget import DEFAULT_LIMITS, ExpressionLimits
from engine.graph import Node, OnError
from engine.node_type_policy import PolicySnapshot
from engine.node_types import NodeTypeRegistry, load_registry
from engine.nodes.base import Item, NodeResources, RunInfo
from engine.output_limit import DEFAULT_MAX_NODE_OUTPUT_BYTES
from engine.plan import Plan, PlanError, compile_plan
from engine.states import ExecutionStatus
from engine.validation import Problem
from engine.validation.text import show
from engine.workflow_reader import WorkflowReader
from server.run_resources import file_run_resources
from server.settings import Settings

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


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
    reader = WorkflowReader()
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
