"""The JavaScript `graphql-ws` client (what browser frontends use) receives a whole
execution's events from a real server (tests/js/subscribe.mjs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.app import create_app
from tests.api.test_executions import create, execute
from tests.api.test_subscriptions import wait_then_done
from tests.conftest import Caller
from tests.live import JS_DIR, node_with, serve

SCRIPT = JS_DIR / "subscribe.mjs"


@pytest.fixture
def node_binary() -> str:
    return node_with("graphql-ws")


@pytest.fixture
async def app(database, settings, registry) -> Any:
    """The app the test's callers post to is the one served (its events are live there)."""
    return create_app(settings, database=database, registry=registry)


@pytest.fixture
async def ws_url(app: Any) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


async def test_the_graphql_ws_client_receives_a_whole_execution(
    node_binary: str, ws_url: str, alice: Caller, database: Any
) -> None:
    workflow_id = await create(alice, *wait_then_done(0.3))
    execution_id = str((await execute(alice, workflow_id))["id"])
    process = await asyncio.create_subprocess_exec(
        node_binary,
        str(SCRIPT),
        ws_url,
        alice.token,
        execution_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    events = [json.loads(line) for line in stdout.decode().splitlines()]
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "EXECUTION_QUEUED"
    assert events[-1] == {
        "sequence": len(events),
        "type": "EXECUTION_FINISHED",
        "nodeId": None,
        "status": "SUCCEEDED",
    }
    assert {event["nodeId"] for event in events} >= {"start", "wait", "done"}
