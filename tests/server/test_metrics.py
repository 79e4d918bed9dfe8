"""Prometheus metrics (embedded mode): off by default, never open on the API port, and the
counters move when workflows run. The worker's are in tests/distributed/test_metrics.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from gql import gql
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlmodel import col, update

from engine import metrics
from engine.node_types import load_registry
from engine.runner import ExecutionRunner
from server.app import create_app
from server.observability import Observability
from server.settings import InvalidSettingsError, load_settings
from storage import executions, workflows
from storage.db import Database
from storage.execution_source import DatabaseExecutionSource
from storage.leases import LeaseKeeper
from storage.models import Execution, Workflow
from storage.recorder import GroupCommitWriter
from storage.types import utcnow
from tests.api.test_executions import create, execute
from tests.api.test_http_node import MockApi, api  # noqa: F401 (a fixture)
from tests.api.test_pinned_data import pin
from tests.api.test_webhooks import hook_workflow
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import EXECUTION_EVENTS, client, http_url, serve
from tests.polling import until
from tests.server.loom_process import run_loom
from tests.server.test_cli import _one_error_line

TOKEN = "metrics-token-0123456789"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape by name and labels (parsed by prometheus_client)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value for (found, keys), value in samples.items() if found == name and wanted <= set(keys)
    )


@pytest.fixture(autouse=True)
def metrics_off_after() -> Iterator[None]:
    yield
    metrics.disable()


@pytest.fixture
async def app(database, settings, registry) -> Any:
    on = settings.model_copy(
        update={"metrics_token": SecretStr(TOKEN), "http_allowed_networks": ["127.0.0.1/32"]}
    )
    return create_app(on, database=database, registry=registry)


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as url:
        base = http_url(url).removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_off_by_default_and_not_served(database, settings, registry) -> None:
    app = create_app(settings, database=database, registry=registry)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client:
        assert (await client.get("/metrics")).status_code == 404
    assert not metrics.enabled()


async def test_the_token_is_required(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = await http.get("/metrics", headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "loom_" not in response.text
    assert total(await scrape(http), "loom_process_info", role="api") == 1


async def test_counters_move_when_workflows_run(
    http: httpx.AsyncClient,
    alice: Caller,
    api: MockApi,  # noqa: F811
) -> None:
    before = await scrape(http)
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("ok", "Ok", "http_request", parameters={"url": f"{api.base}/items"}),
            node("gone", "Gone", "http_request", parameters={"url": f"{api.base}/missing"}),
        ],
        [edge("start", "ok"), edge("ok", "gone")],
    )
    started = await execute(alice, workflow_id)
    assert started["__typename"] == "Execution", started
    await hook_workflow(alice, {"path": "counted"})
    assert (await http.post("/webhook/counted", json={"n": 1})).status_code == 202
    assert (await http.post("/webhook/not-there")).status_code == 404

    async def finished_both() -> Samples | None:
        samples = await scrape(http)
        done = total(samples, "loom_executions_finished_total") - total(
            before, "loom_executions_finished_total"
        )
        return samples if done >= 2 else None

    after = await until(finished_both, what="two executions counted as finished")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("loom_executions_started_total", mode="manual") == 1
    assert moved("loom_executions_started_total", mode="webhook") == 1
    assert moved("loom_executions_finished_total", mode="manual", status="FAILED") == 1
    assert moved("loom_executions_finished_total", mode="webhook", status="SUCCEEDED") == 1
    assert moved("loom_execution_duration_seconds_count", mode="manual") == 1
    assert moved("loom_node_runs_total", node_type="http_request", status="SUCCEEDED") == 1
    assert moved("loom_node_runs_total", node_type="http_request", status="FAILED") == 1
    assert moved("loom_node_runs_total", node_type="manual_trigger") == 1
    assert moved("loom_node_run_duration_seconds_count", node_type="http_request") == 2
    assert moved("loom_http_request_node_calls_total", status_class="2xx") == 1
    assert moved("loom_http_request_node_calls_total", status_class="4xx") == 1
    assert moved("loom_webhook_requests_total", status="202") == 1
    assert moved("loom_webhook_requests_total", status="404") == 1
    assert moved("loom_group_commit_batch_size_count") >= 1
    assert moved("loom_group_commit_seconds_sum") > 0
    assert total(after, "loom_event_loop_lag_seconds_count") > 0
    assert ("loom_queue_depth", ()) in after  # sampled when the process started
    assert not any("execution_id" in dict(labels) for _, labels in after)
    assert not any("workflow_id" in dict(labels) for _, labels in after)


async def test_the_metrics_port_serves_them_with_the_token(database, settings) -> None:
    on = settings.model_copy(update={"metrics_port": 0, "metrics_token": SecretStr(TOKEN)})
    observability = Observability(on, database, "worker")
    await observability.start()
    try:
        base = f"http://127.0.0.1:{observability.metrics_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            assert (await client.get("/metrics")).status_code == 401
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        samples = parse(response.text)
        assert total(samples, "loom_process_info", role="worker") == 1
        # The database's gauges are the API processes' (a worker would multiply them).
        assert not any(name.startswith("loom_queue") for name, _ in samples)
        assert not any(name == "loom_executions" for name, _ in samples)
        assert observability.samples == 0
    finally:
        await observability.stop()


async def test_a_metrics_port_in_use_is_a_one_line_error(database, settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        observability = Observability(
            settings.model_copy(update={"metrics_port": port}), database, "worker"
        )
        with pytest.raises(InvalidSettingsError, match=f"LOOM_METRICS_PORT={port}: cannot listen"):
            await observability.start()


async def test_pruned_rows_are_counted_by_table(database, settings) -> None:
    registry = metrics.enable("api", "test")
    metrics.record_pruned({"executions": 3, "node_runs": 12, "execution_events": 0})
    from prometheus_client import generate_latest

    samples = parse(generate_latest(registry).decode())
    assert total(samples, "loom_pruned_rows_total", table="executions") == 3
    assert total(samples, "loom_pruned_rows_total", table="node_runs") == 12
    assert total(samples, "loom_pruned_rows_total", table="execution_events") == 0


def test_workflow_ids_label_only_when_opted_in() -> None:
    from prometheus_client import generate_latest

    registry = metrics.enable("api", "test", workflow_labels=True)
    metrics.execution_started("manual", "wf-1")
    metrics.execution_finished("manual", "SUCCEEDED", "wf-1", 0.5)
    samples = parse(generate_latest(registry).decode())
    assert total(samples, "loom_executions_finished_total", workflow_id="wf-1") == 1
    assert total(samples, "loom_executions_started_total", workflow_id="wf-1") == 1


def test_every_metric_is_in_the_operations_table() -> None:
    registry = metrics.enable("api", "test")
    families = {
        family.name for family in registry.collect() if family.name.startswith(metrics.PREFIX)
    }
    table = re.findall(r"^\| `(loom_[a-z_]+)` \|", OPERATIONS.read_text(), re.M)
    documented = {name.removesuffix("_total") for name in table}
    assert len(families) > 20
    assert sorted(families - documented) == [], "missing from docs/operations.md"
    assert sorted(documented - families) == [], "documented but not registered"


def test_off_prometheus_client_is_not_imported() -> None:
    probe = (
        "import sys\n"
        "from server.app import create_app\n"
        "from server.settings import Settings\n"
        "import server.worker\n"
        "create_app(Settings(_env_file=None, database_url='sqlite+aiosqlite://'))\n"
        "print('prometheus_client' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False", result.stderr


def _counted(name: str) -> float:
    from prometheus_client import generate_latest

    registry = metrics.registry()
    assert registry is not None
    return total(parse(generate_latest(registry).decode()), name)


async def _queued_execution(
    alice: Caller, database: Database, after_start: dict[str, Any] | None = None
) -> str:
    """A QUEUED execution nothing runs; its workflow a trigger and `after_start`."""
    nodes = [node("start", "Start", "manual_trigger"), *([after_start] if after_start else [])]
    edges = [edge("start", after_start["id"])] if after_start else []
    workflow_id = await create(alice, nodes, edges)
    async with database.transaction() as session:
        workflow = await session.get(Workflow, workflow_id)
        assert workflow is not None
        snapshot = await workflows.ensure_snapshot(session, workflow, None)
        row = await executions.create_execution(
            session, workflow=workflow, snapshot=snapshot, mode="manual", input={}, created_by=None
        )
    return row.id


async def test_a_graceful_handover_is_not_an_expired_lease(
    alice: Caller, database: Database
) -> None:
    metrics.enable("worker", "test")
    execution_id = await _queued_execution(alice, database)
    stopping = DatabaseExecutionSource(database, GroupCommitWriter(database), owner="stopping")
    loaded = await stopping.load(execution_id)
    assert loaded is not None and await stopping.claim(loaded)
    await stopping.release(loaded, resume_now=True)  # what a clean stop does
    taker = DatabaseExecutionSource(database, GroupCommitWriter(database), owner="taker")
    again = await taker.load(execution_id)
    assert again is not None and await taker.claim(again)
    assert _counted("loom_leases_expired_total") == 0


async def test_a_lease_run_out_is_counted_expired(alice: Caller, database: Database) -> None:
    metrics.enable("worker", "test")
    execution_id = await _queued_execution(alice, database)
    dying = DatabaseExecutionSource(database, GroupCommitWriter(database), owner="dying")
    loaded = await dying.load(execution_id)
    assert loaded is not None and await dying.claim(loaded)
    async with database.transaction() as session:  # its holder died: the lease runs out
        await session.exec(
            update(Execution)
            .where(col(Execution.id) == execution_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    taker = DatabaseExecutionSource(database, GroupCommitWriter(database), owner="taker")
    again = await taker.load(execution_id)
    assert again is not None and again.lease_held and await taker.claim(again)
    assert _counted("loom_leases_expired_total") == 1


async def test_a_run_whose_lease_another_process_took_is_counted_lost(
    alice: Caller, database: Database
) -> None:
    metrics.enable("worker", "test")
    waits = node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"})
    execution_id = await _queued_execution(alice, database, waits)
    writer = GroupCommitWriter(database)
    await writer.start()
    keeper = LeaseKeeper(database, "paused", lease_s=5.0, interval_s=0.05)
    keeper.start()
    source = DatabaseExecutionSource(database, writer, owner="paused", lease_s=5.0)
    runner = ExecutionRunner(source, writer, load_registry(), leases=keeper)
    metrics.watch_leases(lambda: len(keeper.held()))  # as `loom worker` does
    try:
        run = asyncio.create_task(runner.run(execution_id))
        await until(lambda: keeper.held() == [execution_id], what="the run holding its lease")
        assert _counted("loom_leases_held") == 1
        async with database.transaction() as session:  # another process took it over
            await session.exec(
                update(Execution)
                .where(col(Execution.id) == execution_id)
                .values(lease_generation=Execution.lease_generation + 1, lease_owner="taker")
            )
        assert await asyncio.wait_for(run, 10) is None  # stopped here, nothing recorded
    finally:
        keeper.stop()
        await writer.stop()
    assert _counted("loom_leases_lost_total") == 1
    assert _counted("loom_leases_held") == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_loom_serve_with_a_metrics_port_it_cannot_use_is_a_one_line_error(
    tmp_path: Path, host: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_loom(
            "serve",
            "--port",
            "1",
            cwd=tmp_path,
            LOOM_METRICS_PORT=str(port),
            LOOM_METRICS_HOST=host,
        )
    assert ran.code == 1, ran.stderr
    assert _one_error_line(ran.stderr).startswith(
        f"Error: LOOM_METRICS_PORT={port}: cannot listen on {host}:{port} ("
    )
    assert "Traceback" not in ran.stderr
    assert "Admin token" not in ran.stdout  # refused before anything was done
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("token", ["", "short-token"])
def test_an_empty_or_short_token_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("LOOM_METRICS_TOKEN", token)
    with pytest.raises(InvalidSettingsError) as refused:
        load_settings(_env_file=None)
    message = str(refused.value)
    assert message.startswith("LOOM_METRICS_TOKEN: must be at least 16 characters"), message
    assert "\n" not in message
    assert token == "" or token not in message  # not echoed


def test_heartbeats_must_be_forgotten_after_they_show_dead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOM_HEARTBEAT_S", "20")
    monkeypatch.setenv("LOOM_HEARTBEAT_FORGET_S", "60")
    with pytest.raises(
        InvalidSettingsError, match=r"^LOOM_HEARTBEAT_FORGET_S='60': must be more than 3 times"
    ):
        load_settings(_env_file=None)
    monkeypatch.setenv("LOOM_HEARTBEAT_FORGET_S", "61")
    assert load_settings(_env_file=None).heartbeat_forget_s == 61


async def test_node_runs_that_did_not_run_are_not_counted(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    before = await scrape(http)
    fails = {"fields": [{"name": "a", "value": "{{ $json.x.y }}"}]}  # if it ran
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("fetch", "Fetch", "set", parameters=fails),
            node("total", "Total", "set", parameters={"fields": [{"name": "t", "value": "1"}]}),
        ],
        [edge("start", "fetch"), edge("fetch", "total")],
    )
    assert (await pin(alice, workflow_id, "fetch", [{"price": 4}], 1))["__typename"] == "Workflow"
    started = await execute(alice, workflow_id)
    assert started["__typename"] == "Execution", started

    async def finished() -> Samples | None:
        samples = await scrape(http)
        done = total(samples, "loom_executions_finished_total") - total(
            before, "loom_executions_finished_total"
        )
        return samples if done >= 1 else None

    after = await until(finished, what="the execution counted as finished")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("loom_executions_finished_total", status="SUCCEEDED") == 1
    # `fetch` was PINNED (it did not run): only `total` ran and is counted and timed.
    assert moved("loom_node_runs_total", node_type="set") == 1
    assert moved("loom_node_run_duration_seconds_count", node_type="set") == 1
    assert moved("loom_node_run_duration_seconds_bucket", node_type="set", le="0.0001") >= 0
    assert ("loom_node_run_duration_seconds_bucket", (("le", "0.0001"), ("node_type", "set"))) in (
        after
    )


def test_a_metrics_port_open_to_the_network_without_a_token_is_warned_about(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from server.observability import listen

    metrics.enable("worker", "test")
    server = listen(settings.model_copy(update={"metrics_port": 0, "metrics_host": "0.0.0.0"}))
    server.server_close()
    assert "set LOOM_METRICS_TOKEN" in caplog.text
    caplog.clear()
    quiet = listen(settings.model_copy(update={"metrics_port": 0}))  # loopback
    quiet.server_close()
    assert "LOOM_METRICS_TOKEN" not in caplog.text


@pytest.fixture
async def slow_api() -> AsyncIterator[str]:
    """A local HTTP server that answers only once the test is over."""
    released = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await released.wait()
        return web.Response(text="late")

    server = web.Application()
    server.router.add_get("/slow", slow)
    runner = web.AppRunner(server, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/slow"
    released.set()
    await runner.cleanup()


async def test_an_http_call_cut_off_by_the_node_timeout_counts_as_an_error(
    http: httpx.AsyncClient, alice: Caller, slow_api: str
) -> None:
    before = await scrape(http)
    call = node("call", "Call", "http_request", parameters={"url": slow_api}, timeoutSeconds=0.3)
    workflow_id = await create(
        alice, [node("start", "Start", "manual_trigger"), call], [edge("start", "call")]
    )
    started = await execute(alice, workflow_id)
    assert started["__typename"] == "Execution", started

    async def finished() -> Samples | None:
        samples = await scrape(http)
        done = total(samples, "loom_executions_finished_total") - total(
            before, "loom_executions_finished_total"
        )
        return samples if done >= 1 else None

    after = await until(finished, what="the execution counted as finished")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("loom_executions_finished_total", status="FAILED") == 1
    assert moved("loom_http_request_node_calls_total", status_class="error") == 1
    assert moved("loom_http_request_node_calls_total") == 1


async def test_websocket_and_subscription_gauges_follow_a_live_subscription(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    waits = node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"})
    workflow_id = await create(
        alice, [node("start", "Start", "manual_trigger"), waits], [edge("start", "wait")]
    )
    execution_id = (await execute(alice, workflow_id))["id"]
    ws_url = str(http.base_url).replace("http://", "ws://").rstrip("/") + "/graphql"

    async def gauges(expected: float) -> Samples | None:
        samples = await scrape(http)
        shown = (
            total(samples, "loom_websocket_connections"),
            total(samples, "loom_subscriptions"),
        )
        return samples if shown == (expected, expected) else None

    assert await gauges(0)
    async with client(ws_url, alice.token) as session:
        request = gql(EXECUTION_EVENTS)
        request.variable_values = {"id": execution_id}
        async with contextlib.aclosing(session.subscribe(request)) as results:
            first = await anext(results)
            assert first["executionEvents"]["sequence"] == 1
            await until(lambda: gauges(1), what="one websocket and one subscription shown")
    await until(lambda: gauges(0), what="both gauges back to 0 once closed")
    cancelled = await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) { __typename } }", {"id": execution_id}
    )
    assert cancelled["cancelExecution"] == {"__typename": "Execution"}


def test_webhook_statuses_chosen_by_a_workflow_are_counted_by_their_class() -> None:
    # A Respond to Webhook node may answer any code from 100 to 599: the label stays bounded.
    registry = metrics.enable("api", "test")
    try:
        for status in (200, 404, 418, 299, 599, 418):
            metrics.webhook_answered(status)
        counted = {
            sample.labels["status"]: sample.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples
            if sample.name == "loom_webhook_requests_total"
        }
    finally:
        metrics.disable()
    assert counted == {"200": 1, "404": 1, "4xx": 2, "2xx": 1, "5xx": 1}
