"""The GraphQL-over-HTTP spec audit of the `graphql-http` npm package (`serverAudits`, its
MUSTs, SHOULDs and MAYs) passes against a real server with no failure, warning or notice
(tests/js/audit.mjs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.app import create_app
from tests.conftest import Caller
from tests.live import JS_DIR, http_url, node_with, serve


@pytest.fixture
async def url(database: Any, settings: Any, registry: Any) -> AsyncIterator[str]:
    async with serve(create_app(settings, database=database, registry=registry)) as ws_url:
        yield http_url(ws_url)


async def test_every_audit_of_the_graphql_over_http_spec_is_ok(url: str, alice: Caller) -> None:
    node = node_with("graphql-http")
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "audit.mjs"),
        url,
        alice.token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    results = [json.loads(line) for line in stdout.decode().splitlines()]
    assert len(results) > 50, results  # the whole list ran
    not_ok = [
        f"{result['status']}: {result['name']} ({result['reason']}; HTTP {result['httpStatus']})"
        for result in results
        if result["status"] != "ok"
    ]
    assert not not_ok, "\n".join(not_ok)
