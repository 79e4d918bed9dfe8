"""Logs: LOOM_LOG_FORMAT=json writes one JSON object per line, with the ids of the request,
execution, workflow, node and attempt in hand (and trace and span ids with tracing on);
LOOM_ACCESS_LOG adds a line per request, without query strings or webhook paths; a bad
value stops every command with one line naming it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine import log_context, tracing
from engine.node_types import NodeGroup, NodeType, Port, load_registry
from engine.nodes.base import NodeRunContext, PortItems
from server.app import create_app
from server.settings import InvalidSettingsError, load_settings
from server.telemetry import log_handler
from tests import polling
from tests.api.test_executions import create, execute, finished
from tests.api.test_subworkflows import until
from tests.conftest import Caller
from tests.distributed.cluster import free_port
from tests.factories import edge, node
from tests.server.loom_process import LOOM, loom_env, run_loom
from tests.tracing_helpers import spans_in_memory as recorded_spans


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_logs(settings: Any) -> Iterator[io.StringIO]:
    """What Loom's loggers write, in the JSON format, for the test's length."""
    stream = io.StringIO()
    handler = log_handler(settings.model_copy(update={"log_format": "json"}), stream)
    tracing.bind_log_context(True)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        tracing.bind_log_context(False)


def test_a_json_line_has_time_level_message_logger_and_the_bound_ids(
    json_logs: io.StringIO,
) -> None:
    logger = logging.getLogger("loom.test")
    with log_context.bound(request_id="r1", execution_id="e1", workflow_id="w1"):
        with log_context.bound(node_id="n1", attempt=2):
            logger.warning("inside %s", "a node")
        logger.info("outside the node")
    logger.error("nothing bound")
    inside, outside, unbound = _lines(json_logs)
    assert inside["message"] == "inside a node"
    assert inside["level"] == "WARNING" and inside["logger"] == "loom.test"
    assert inside["time"].endswith("+00:00")
    assert {key: inside[key] for key in log_context.FIELDS} == {
        "request_id": "r1",
        "execution_id": "e1",
        "workflow_id": "w1",
        "node_id": "n1",
        "attempt": 2,
    }
    assert "node_id" not in outside and outside["execution_id"] == "e1"
    assert not set(log_context.FIELDS) & set(unbound)


def test_an_exception_is_one_line_too(json_logs: io.StringIO) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("loom.test").exception("it failed")
    (line,) = _lines(json_logs)
    assert line["message"] == "it failed"
    assert "ValueError: broken" in line["exception"]


async def _logs_and_passes(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    logging.getLogger("loom.test.node").warning("node at work")
    return {"main": inputs.get("main", [])}


BLOCKING = asyncio.Event()  # set while a `test_blocks` node runs


async def _blocks(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    BLOCKING.set()
    await asyncio.Event().wait()  # until cancelled
    return {}


def _registry() -> Any:
    registry = load_registry()
    registry.register(
        NodeType(
            name="test_blocks",
            version=1,
            display_name="Blocks",
            description="Runs until cancelled.",
            group=NodeGroup.ACTION,
            inputs=(Port("main"),),
            outputs=(Port("main"),),
            parameters_schema={"type": "object"},
            execute=_blocks,
        ),
        schema_checked=True,
    )
    registry.register(
        NodeType(
            name="test_logs",
            version=1,
            display_name="Logs",
            description="Logs a line.",
            group=NodeGroup.ACTION,
            inputs=(Port("main"),),
            outputs=(Port("main"),),
            parameters_schema={"type": "object"},
            execute=_logs_and_passes,
        ),
        schema_checked=True,
    )
    return registry


@pytest.fixture
async def app(request: pytest.FixtureRequest, database, settings) -> AsyncIterator[Any]:
    """The API with JSON logs and (unless the test passes False) tracing on."""
    traced = getattr(request, "param", True)
    if traced:
        request.getfixturevalue("spans_in_memory")
    observed = settings.model_copy(
        update={"tracing": "otlp" if traced else "off", "log_format": "json"}
    )
    yield create_app(observed, database=database, registry=_registry())


@pytest.mark.parametrize("app", [False], indirect=True)
async def test_json_logs_with_tracing_off_have_the_ids_but_no_trace(
    app, alice: Caller, json_logs: io.StringIO
) -> None:
    assert not tracing.enabled()
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger"), node("work", "Work", "test_logs")],
        [edge("start", "work")],
    )
    started = await execute(alice, workflow_id)
    assert (await finished(app, alice, started["id"]))["status"] == "SUCCEEDED"
    (line,) = [line for line in _lines(json_logs) if line["message"] == "node at work"]
    assert (line["execution_id"], line["node_id"], line["attempt"]) == (started["id"], "work", 1)
    assert len(line["request_id"]) == 16
    assert "trace_id" not in line and "span_id" not in line


@pytest.fixture
def spans_in_memory() -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:
        yield exporter


async def test_a_node_logs_with_its_request_execution_workflow_node_attempt_and_span(
    app, alice: Caller, json_logs: io.StringIO, spans_in_memory: InMemorySpanExporter
) -> None:
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger"), node("work", "Work", "test_logs")],
        [edge("start", "work")],
    )
    started = await execute(alice, workflow_id)
    assert (await finished(app, alice, started["id"]))["status"] == "SUCCEEDED"
    (line,) = [line for line in _lines(json_logs) if line["message"] == "node at work"]
    assert line["execution_id"] == started["id"]
    assert line["workflow_id"] == workflow_id
    assert (line["node_id"], line["attempt"]) == ("work", 1)
    assert len(line["request_id"]) == 16
    (span,) = [
        span
        for span in spans_in_memory.get_finished_spans()
        if span.name == "loom.node" and span.attributes["loom.node.id"] == "work"
    ]
    assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert line["span_id"] == f"{span.context.span_id:016x}"


@pytest.mark.parametrize(
    ("variable", "value"), [("LOOM_LOG_FORMAT", "xml"), ("LOOM_TRACING", "zipkin")]
)
def test_a_bad_log_format_or_tracing_value_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettingsError) as refused:
        load_settings(_env_file=None)
    assert str(refused.value).startswith(f"{variable}={value!r}: ")
    ran = run_loom("serve", cwd=tmp_path, **{variable: value})
    assert ran.code == 1
    (error,) = [line for line in ran.stderr.splitlines() if line.startswith("Error: ")]
    assert error.startswith(f"Error: {variable}={value!r}: "), ran.stderr
    assert "Traceback" not in ran.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
def test_serve_in_json_writes_only_json_lines_and_an_access_log_without_queries(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    env = loom_env(
        LOOM_DATA_DIR=str(tmp_path),
        LOOM_PORT=str(port),
        LOOM_LOG_FORMAT="json",
        LOOM_ACCESS_LOG="true",
        LOOM_ADMIN_TOKEN="json-logs-admin-token-0123456789",
    )

    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(LOOM), "serve"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.05)
            query = urllib.request.Request(
                f"{base}/graphql?query=%7Bviewer%7Bid%7D%7D&k=query-secret",
                headers={"Authorization": "Bearer json-logs-admin-token-0123456789"},
            )
            with urllib.request.urlopen(query, timeout=5):
                pass
            for path in ("/webhook/path-secret", "/Webhook/path-secret", "//webhook/path-secret"):
                with pytest.raises(urllib.error.HTTPError):
                    urllib.request.urlopen(f"{base}{path}", timeout=5)
            deadline = time.monotonic() + 10
            while log.read_text().count('"loom.access"') < 5:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=30)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert {"time", "level", "message", "logger"} <= set(lines[0])
    assert any(line["logger"] == "uvicorn.error" for line in lines)
    assert not any("color_message" in line for line in lines)
    access = [line for line in lines if line["logger"] == "loom.access"]
    assert [(line["method"], line["path"], line["status"]) for line in access][-4:] == [
        ("GET", "/graphql", 200),
        ("GET", "/webhook/{path:path}", 404),
        ("GET", "unmatched", 404),
        ("GET", "unmatched", 404),
    ]
    assert all(len(line["request_id"]) == 16 for line in access)
    assert "query-secret" not in text and "path-secret" not in text


async def test_a_called_workflow_logs_its_own_ids_not_its_callers(
    app, alice: Caller, json_logs: io.StringIO
) -> None:
    called = await create(
        alice,
        [node("called", "Called", "execute_workflow_trigger"), node("work", "Work", "test_logs")],
        [edge("called", "work")],
    )
    calling = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "call",
                "Call",
                "execute_workflow",
                parameters={"workflowId": called, "source": "draft"},
            ),
        ],
        [edge("start", "call")],
    )
    started = await execute(alice, calling)
    assert (await until(alice, started["id"], {"SUCCEEDED"}))["status"] == "SUCCEEDED"
    (line,) = [line for line in _lines(json_logs) if line["message"] == "node at work"]
    assert line["execution_id"] != started["id"]
    assert (line["workflow_id"], line["node_id"], line["attempt"]) == (called, "work", 1)
    # The caller's request is not the child's: a run's task starts from a fresh context.
    assert "request_id" not in line
    for other in _lines(json_logs):
        if other.get("execution_id") == line["execution_id"]:
            assert other.get("node_id") in (None, "called", "work"), other


async def test_a_cancelled_run_ends_its_spans_as_cancelled(
    app, alice: Caller, spans_in_memory: InMemorySpanExporter
) -> None:
    BLOCKING.clear()
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger"), node("block", "Block", "test_blocks")],
        [edge("start", "block")],
    )
    started = await execute(alice, workflow_id)
    await polling.until(BLOCKING.is_set, what="the node to run")
    cancelled = await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { ... on Execution { status } } }",
        {"id": started["id"]},
    )
    assert cancelled["cancelExecution"]["status"] == "CANCELLED"

    def ended(name: str) -> list[Any]:
        return [s for s in spans_in_memory.get_finished_spans() if s.name == name]

    (execution,) = await polling.until(lambda: ended("loom.execution"), what="the run's span")
    (block,) = [s for s in ended("loom.node") if s.attributes["loom.node.id"] == "block"]
    assert block.attributes["loom.node.status"] == "CANCELLED"
    assert execution.attributes.get("loom.execution.status") == "CANCELLED", execution.to_json()
