"""Nodes failing together: each keeps the attempts it ran, and no attempt that never ran."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.app import create_app
from tests.api.test_executions import create, execute, finished
from tests.api.test_http_node import close_http
from tests.conftest import Caller
from tests.factories import edge, node

NODE_RUNS = """
query($id: ID!) { execution(id: $id) { status error { type } nodeRuns { nodeId status attempt } } }
"""


@pytest.fixture
async def app(database, settings, registry) -> AsyncIterator[Any]:
    allowed = settings.model_copy(update={"http_allowed_networks": ["127.0.0.1/32"]})
    app = create_app(allowed, database=database, registry=registry)
    yield app
    await close_http(app)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_three_http_requests_to_a_down_target_record_one_attempt_each(
    app: Any, alice: Caller
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    calls = [
        node(
            f"call{i}",
            f"Call {i}",
            "http_request",
            parameters={"url": url, "retry": {"maxAttempts": 1}},
        )
        for i in range(3)
    ]
    workflow_id = await create(
        alice,
        [node("start", "Start", "manual_trigger"), *calls, node("after", "After")],
        [*(edge("start", f"call{i}") for i in range(3)), edge("call0", "after")],
    )
    started = await execute(alice, workflow_id)
    await finished(app, alice, started["id"])
    execution = (await alice.gql(NODE_RUNS, {"id": started["id"]}))["execution"]
    assert execution["status"] == "FAILED"
    runs = sorted((run["nodeId"], run["attempt"], run["status"]) for run in execution["nodeRuns"])
    calls_ran = [run for run in runs if run[0].startswith("call")]
    # Each ran once; none has an attempt 2 it never started.
    assert [(node_id, attempt) for node_id, attempt, _ in calls_ran] == [
        ("call0", 1),
        ("call1", 1),
        ("call2", 1),
    ]
    # The first failure stops the run: the others failed too, or were cancelled running.
    assert {status for _, _, status in calls_ran} <= {"FAILED", "CANCELLED"}
    assert ("after", 1, "CANCELLED") in runs
