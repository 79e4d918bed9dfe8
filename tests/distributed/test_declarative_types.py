"""A declarative node type made over the API runs on a `loom worker` process, which reads
the workspace's types from the database when it plans the execution."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.distributed.cluster import Cluster, create_cluster, destroy_cluster
from tests.distributed.conftest import _require_services
from tests.distributed.test_workers import trigger

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
async def local_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster whose processes may reach loopback (the local API below)."""
    await _require_services()
    created = await create_cluster(tmp_path, LOOM_HTTP_ALLOWED_NETWORKS="127.0.0.1/32")
    try:
        await created.start_api()
        yield created
    finally:
        await destroy_cluster(created)


@pytest.fixture
async def api() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def greet(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"greeting": f"hello {request.query['who']}"})

    app = web.Application()
    app.router.add_get("/greet", greet)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_a_worker_runs_a_workspace_type(
    local_cluster: Cluster, api: tuple[str, list[dict[str, Any]]]
) -> None:
    base, seen = api
    await local_cluster.start_worker()
    created = await local_cluster.gql(
        "mutation($input: DeclarativeNodeTypeInput!) {"
        ' createNodeType(name: "ws.greet", input: $input) { __typename } }',
        {
            "input": {
                "displayName": "Greet",
                "parametersSchema": {"type": "object", "properties": {"who": {"type": "string"}}},
                "requestTemplate": {
                    "url": f"{base}/greet",
                    "query": {"who": "{{ $parameter.who }}"},
                },
            }
        },
    )
    assert created["createNodeType"]["__typename"] == "NodeType", created
    greet = {"id": "greet", "name": "Greet", "type": "ws.greet", "parameters": {"who": "ada"}}
    workflow_id = await local_cluster.create_workflow(
        [trigger(), greet], [{"source": "start", "target": "greet"}]
    )
    execution_id = await local_cluster.execute(workflow_id)
    statuses = await local_cluster.wait_for([execution_id], {"SUCCEEDED", "FAILED"})
    assert statuses[execution_id] == "SUCCEEDED", await local_cluster.node_runs(execution_id)
    assert seen == [{"who": "ada"}]
