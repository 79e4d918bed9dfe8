"""Traces of runs in embedded mode, recorded in memory: the request span, the execution span
under it, a span per node attempt under that, and the `traceparent` the HTTP Request node
sends. (tests/distributed/test_tracing.py follows one run across processes.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine import tracing
from server.app import create_app
from storage.db import Database
from tests.api.test_executions import create, execute, finished
from tests.api.test_http_node import close_http
from tests.conftest import Caller
from tests.factories import edge, node
from tests.polling import until
from tests.tracing_helpers import recording_api, spans_in_memory, stored_traceparent

ITEM_DATA = "item-data-never-in-a-span"
HEADER_VALUE = "header-value-never-in-a-span"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with spans_in_memory() as exporter:
        yield exporter


@pytest.fixture
async def app(database, settings, registry, spans) -> AsyncIterator[Any]:
    traced = settings.model_copy(
        update={"tracing": "otlp", "http_allowed_networks": ["127.0.0.1/32"]}
    )
    app = create_app(traced, database=database, registry=registry)
    yield app
    await close_http(app)


@pytest.fixture
async def remote() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    async with recording_api() as api:
        yield api


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def call_workflow(url: str, **call: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        [
            node("start", "Start", "manual_trigger"),
            node("set", "Set", "set", parameters={"fields": [{"name": "x", "value": 1}]}),
            node("call", "Call", "http_request", parameters={"url": url, **call}),
        ],
        [edge("start", "set"), edge("set", "call")],
    )


async def test_a_run_is_a_request_span_an_execution_span_and_a_span_per_node(
    app, alice: Caller, spans: InMemorySpanExporter, remote: Any
) -> None:
    url, seen = remote
    workflow_id = await create(alice, *call_workflow(url))
    response = await alice.post(
        "mutation Run($id: ID!, $input: JSON) { executeWorkflow(id: $id, input: $input) {"
        " ... on Execution { id } } }",
        {"id": workflow_id, "input": {"secret": ITEM_DATA}},
        operationName="Run",
    )
    execution_id = response.json()["data"]["executeWorkflow"]["id"]
    assert (await finished(app, alice, execution_id))["status"] == "SUCCEEDED"

    (request,) = [
        span
        for span in by_name(spans, "POST /graphql")
        if span.attributes.get("graphql.operation.name") == "Run"
    ]
    assert request.attributes["http.response.status_code"] == 200
    (execution,) = by_name(spans, "loom.execution")
    assert execution.context.trace_id == request.context.trace_id
    assert parent_of(execution) == request.context.span_id
    assert execution.attributes["loom.execution.id"] == execution_id
    assert execution.attributes["loom.execution.mode"] == "manual"
    assert execution.attributes["loom.execution.status"] == "SUCCEEDED"
    nodes = {span.attributes["loom.node.id"]: span for span in by_name(spans, "loom.node")}
    assert set(nodes) == {"start", "set", "call"}
    for span in nodes.values():
        assert parent_of(span) == execution.context.span_id
        assert span.attributes["loom.node.status"] == "SUCCEEDED"
        assert span.attributes["loom.node.attempt"] == 1
        assert span.attributes["loom.node.items_in"] == 1
        assert span.attributes["loom.node.items_out"] == 1
    assert nodes["call"].attributes["loom.node.type"] == "http_request"
    # The remote API is told the node run's context.
    (headers,) = seen
    version, trace_id, parent_id, _ = headers["traceparent"].split("-")
    assert version == "00"
    assert int(trace_id, 16) == request.context.trace_id
    assert int(parent_id, 16) == nodes["call"].context.span_id
    assert ITEM_DATA not in _exported(spans)


async def test_the_creating_context_is_stored_with_the_execution(
    app, alice: Caller, database: Database, spans: InMemorySpanExporter, remote: Any
) -> None:
    workflow_id = await create(alice, *call_workflow(remote[0]))
    started = await execute(alice, workflow_id)
    await finished(app, alice, started["id"])
    stored = await stored_traceparent(database, started["id"])
    (execution,) = by_name(spans, "loom.execution")
    requests = {span.context.span_id: span for span in by_name(spans, "POST /graphql")}
    creator = requests[parent_of(execution)]
    _, trace_id, span_id, _ = stored.split("-")
    assert (trace_id, span_id) == (
        f"{creator.context.trace_id:032x}",
        f"{creator.context.span_id:016x}",
    )


async def test_a_caller_traceparent_is_continued(app, alice: Caller, spans: Any) -> None:
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    await alice.http.post(
        "/graphql",
        json={"query": "{ viewer { id } }"},
        headers={
            "Authorization": f"Bearer {alice.token}",
            "traceparent": f"00-{caller_trace}-b7ad6b7169203331-01",
        },
    )
    (request,) = by_name(spans, "POST /graphql")
    assert f"{request.context.trace_id:032x}" == caller_trace
    assert parent_of(request) == 0xB7AD6B7169203331


@pytest.mark.parametrize("flags", ["01", "00"])
async def test_a_webhook_caller_traceparent_is_only_linked(
    app, alice: Caller, spans: Any, flags: str
) -> None:
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{caller_trace}-b7ad6b7169203331-{flags}"
    response = await alice.http.post("/webhook/none", json={}, headers={"traceparent": traceparent})
    assert response.status_code == 404
    (request,) = spans.get_finished_spans()  # recorded even though the caller sampled it out
    assert request.name == "POST /webhook/{path:path}"
    assert request.parent is None
    assert f"{request.context.trace_id:032x}" != caller_trace
    (link,) = request.links
    assert f"{link.context.trace_id:032x}" == caller_trace
    assert link.context.span_id == 0xB7AD6B7169203331


async def test_a_malformed_traceparent_starts_a_trace_of_its_own(
    app, alice: Caller, spans: Any
) -> None:
    for path in ("/webhook/none", "/graphql"):
        await alice.http.post(path, json={}, headers={"traceparent": "00-not-a-trace-01"})
    for request in spans.get_finished_spans():
        assert request.parent is None and not request.links


async def test_a_request_span_names_the_route_never_the_path(
    app, alice: Caller, spans: Any
) -> None:
    for path in ("/webhook/span-secret", "/Webhook/span-secret", "//webhook/span-secret"):
        assert (await alice.http.get(path)).status_code == 404
    assert [(span.name, span.attributes["http.route"]) for span in spans.get_finished_spans()] == [
        ("GET /webhook/{path:path}", "/webhook/{path:path}"),
        ("GET unmatched", "unmatched"),
        ("GET unmatched", "unmatched"),
    ]
    assert "span-secret" not in _exported(spans)


async def test_a_traceparent_header_the_user_sets_is_sent_as_it_is(
    app, alice: Caller, spans: Any, remote: Any
) -> None:
    url, seen = remote
    own = "00-11111111111111111111111111111111-2222222222222222-01"
    workflow_id = await create(
        alice,
        *call_workflow(
            url,
            headers=[
                {"name": "traceparent", "value": own},
                {"name": "X-Other", "value": HEADER_VALUE},
            ],
        ),
    )
    started = await execute(alice, workflow_id)
    assert (await finished(app, alice, started["id"]))["status"] == "SUCCEEDED"
    assert seen[0]["traceparent"] == own
    assert HEADER_VALUE not in _exported(spans)


async def test_a_failed_node_and_execution_are_marked_as_errors(
    app, alice: Caller, spans: InMemorySpanExporter, remote: Any
) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "call",
                "Call",
                "http_request",
                parameters={"url": remote[0] + "unavailable", "retry": {"maxAttempts": 1}},
                retry={"maxAttempts": 2, "backoffSeconds": 0.01},
            ),
        ],
        [edge("start", "call")],
    )
    started = await execute(alice, workflow_id)
    execution_answer = await finished(app, alice, started["id"])
    assert execution_answer["status"] == "FAILED"
    recorded = [run["attempt"] for run in execution_answer["nodeRuns"] if run["nodeId"] == "call"]
    attempts = sorted(
        (span for span in by_name(spans, "loom.node") if span.attributes["loom.node.id"] == "call"),
        key=lambda span: span.attributes["loom.node.attempt"],
    )
    assert [span.attributes["loom.node.attempt"] for span in attempts] == sorted(recorded)
    for span in attempts:
        assert span.attributes["loom.node.status"] == "FAILED"
        assert not span.status.is_ok
    (execution,) = by_name(spans, "loom.execution")
    assert execution.attributes["loom.execution.status"] == "FAILED"
    assert not execution.status.is_ok


def _exported(exporter: InMemorySpanExporter) -> str:
    return json.dumps([json.loads(span.to_json()) for span in exporter.get_finished_spans()])


def test_stopping_tracing_waits_for_a_failing_collector_only_as_long_as_asked() -> None:
    import threading
    import time
    from collections.abc import Sequence

    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    released = threading.Event()

    class Unanswering(SpanExporter):
        """A collector that never answers (until the test ends)."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            released.wait(30)
            return SpanExportResult.FAILURE

    provider = tracing.new_provider("api")
    provider.add_span_processor(BatchSpanProcessor(Unanswering()))
    tracing.install(provider)
    try:
        with tracing.span("pending", {}):
            pass
        started = time.monotonic()
        tracing.shutdown(timeout_s=0.2)
        assert time.monotonic() - started < 5
        assert not tracing.enabled()
    finally:
        released.set()


async def test_a_run_a_webhook_starts_is_a_child_of_the_webhook_span(
    app, alice: Caller, spans: InMemorySpanExporter
) -> None:
    from tests.api.test_webhooks import hook_workflow

    set_node = node("set", "Set", "set", parameters={"fields": [{"name": "x", "value": 1}]})
    await hook_workflow(alice, {"path": "traced", "responseMode": "last_node"}, [set_node])
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await alice.http.post("/webhook/traced", json={}, headers={"traceparent": caller})
    assert response.status_code == 200, response.text
    (hook,) = by_name(spans, "POST /webhook/{path:path}")
    # The answer may come before the run's span ends (the last node answers).
    (execution,) = await until(lambda: by_name(spans, "loom.execution"), what="the run's span")
    assert execution.attributes["loom.execution.mode"] == "webhook"
    assert execution.context.trace_id == hook.context.trace_id
    assert parent_of(execution) == hook.context.span_id


async def test_a_called_workflow_runs_under_the_calling_node_span(
    app, alice: Caller, spans: InMemorySpanExporter
) -> None:
    from tests.api.test_subworkflows import DOUBLER_EDGES, DOUBLER_NODES, caller_nodes, run

    called = await create(alice, DOUBLER_NODES, DOUBLER_EDGES)
    calling = await create(alice, caller_nodes(called), [edge("start", "call")])
    assert (await run(alice, calling, {"n": 1}))["status"] == "SUCCEEDED"
    runs = by_name(spans, "loom.execution")
    calling_runs = {s.context.span_id for s in runs if s.attributes["loom.workflow.id"] == calling}
    (called_run,) = [s for s in runs if s.attributes["loom.workflow.id"] == called]
    # The call parks its execution while the called one runs: an attempt in each of its runs.
    calls = [s for s in by_name(spans, "loom.node") if s.attributes["loom.node.id"] == "call"]
    assert calls and all(parent_of(call) in calling_runs for call in calls)
    (parent,) = [call for call in calls if call.context.span_id == parent_of(called_run)]
    assert called_run.context.trace_id == parent.context.trace_id
