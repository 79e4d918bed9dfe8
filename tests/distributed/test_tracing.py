"""One trace across processes: the API's request span, the execution spans a worker records
(before and after a durable wait, each run a child of the request), their node spans, and
the `traceparent` a remote API receives from the HTTP Request node. Both processes export
over OTLP/HTTP to a receiver in the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.distributed.cluster import ADMIN_TOKEN, Cluster, create_cluster, destroy_cluster
from tests.distributed.conftest import _require_services
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.polling import until
from tests.tracing_helpers import recording_api

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture
def receiver() -> AsyncIterator[OtlpReceiver]:
    received = OtlpReceiver()
    yield received
    received.close()


@pytest.fixture
async def traced_cluster(tmp_path: Path, receiver: OtlpReceiver) -> AsyncIterator[Cluster]:
    await _require_services()
    created = await create_cluster(tmp_path)
    created.env.update(
        LOOM_TRACING="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms between exports: the test waits less
        LOOM_HTTP_ALLOWED_NETWORKS="127.0.0.1/32",
        LOOM_DURABLE_WAIT_S="0",  # every wait parks the execution: it resumes in a new run
    )
    try:
        await created.start_api()
        yield created
    finally:
        await destroy_cluster(created)


@pytest.fixture
async def remote() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    async with recording_api() as api:
        yield api


async def test_a_distributed_run_is_one_trace_from_the_request_to_the_remote_api(
    traced_cluster: Cluster, receiver: OtlpReceiver, remote: tuple[str, list[str]]
) -> None:
    cluster = traced_cluster
    url, seen = remote
    await cluster.start_worker()
    workflow_id = await cluster.create_workflow(
        [
            {"id": "start", "name": "Start", "type": "manual_trigger"},
            {"id": "wait", "name": "Wait", "type": "wait", "parameters": {"amount": 0.5}},
            {"id": "call", "name": "Call", "type": "http_request", "parameters": {"url": url}},
        ],
        [{"source": "start", "target": "wait"}, {"source": "wait", "target": "call"}],
    )
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{cluster.base}/graphql",
            json={
                "query": "mutation Run($id: ID!) { executeWorkflow(id: $id) {"
                " ... on Execution { id } } }",
                "variables": {"id": workflow_id},
                "operationName": "Run",
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    execution_id = response.json()["data"]["executeWorkflow"]["id"]
    await cluster.wait_for([execution_id], {"SUCCEEDED"})

    def request_span() -> list[ReceivedSpan]:
        return [
            span
            for span in receiver.named("POST /graphql")
            if span.attributes.get("graphql.operation.name") == "Run"
        ]

    def received() -> list[Any]:
        return [(s.name, s.attributes, s.resource) for s in receiver.spans]

    try:
        (request,) = await until(request_span, within_s=30, what="the request span")
    except AssertionError:
        raise AssertionError([*received(), cluster.api.output()]) from None
    assert request.resource["loom.process"] == "api"
    assert request.resource["service.name"] == "loom"
    await until(lambda: len(receiver.named("loom.execution")) >= 2, within_s=30)
    runs = receiver.named("loom.execution")
    assert len(runs) == 2, received()
    assert {run.resource["loom.process"] for run in runs} == {"worker"}
    assert {run.attributes["loom.execution.id"] for run in runs} == {execution_id}
    assert sorted(run.attributes["loom.execution.resumed"] for run in runs) == [False, True]
    for run in runs:  # the first run and the one after the wait: children of the request
        assert (run.trace_id, run.parent_span_id) == (request.trace_id, request.span_id)
    await until(
        lambda: any(s.attributes["loom.node.id"] == "call" for s in receiver.named("loom.node")),
        within_s=30,
    )
    nodes = receiver.named("loom.node")
    run_ids = {run.span_id for run in runs}
    assert all(span.parent_span_id in run_ids for span in nodes)
    statuses = sorted(
        (span.attributes["loom.node.id"], span.attributes["loom.node.status"]) for span in nodes
    )
    assert statuses == [
        ("call", "SUCCEEDED"),
        ("start", "SUCCEEDED"),
        ("wait", "SUCCEEDED"),
        ("wait", "WAITING"),
    ]
    (call,) = [span for span in nodes if span.attributes["loom.node.id"] == "call"]
    assert call.attributes["loom.node.type"] == "http_request"
    (headers,) = seen
    assert headers["traceparent"].split("-")[:3] == ["00", request.trace_id, call.span_id]
