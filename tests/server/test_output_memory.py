"""Reading a large output from a real `loom serve` costs memory only while the request runs.

Issue 13's reproduction: a node output of 200 MB (200 items of 1,000,000 characters, made by
a node type of a plugin written for this test), read with `outputPage(maxBytes: 1000)` 11
times. Each read used to decode the whole output and left about 190 MB more resident each
time; now a read takes the index and the start of one chunk. The process's RSS (VmRSS, from
/proc) must end within 10% of where it was before the reads, and every answer stays small.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.test_serve_process import _free_port, _start, _stop, _wait_ready

ITEMS = 200
CHARS = 1_000_000
READS = 11
TOKEN = "loom_output_memory_test_token_0123456789"

PLUGIN = f"""
from engine.node_types import NodeGroup, NodeType


async def _big(ctx, inputs):
    return {{"main": [{{"s": "x" * {CHARS}}} for _ in range({ITEMS})]}}


def node_types():
    return [
        NodeType(
            name="rss.big",
            version=1,
            display_name="Big",
            description="Outputs {ITEMS} items of {CHARS} characters.",
            group=NodeGroup.ACTION,
            parameters_schema={{"type": "object"}},
            execute=_big,
        )
    ]
"""


def _plugin(root: Path) -> Path:
    """A node type package, installed the way Loom finds plugins: an entry point."""
    (root / "rss_big").mkdir(parents=True)
    (root / "rss_big" / "__init__.py").write_text(PLUGIN)
    info = root / "rss_big-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rss-big\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[loom.node_types]\nrss = rss_big:node_types\n")
    return root


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _gql(base: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )
    body = response.json()
    assert "errors" not in body, body
    return body, len(response.content)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
@pytest.mark.timeout(300)
def test_reading_a_200_mb_output_leaves_the_server_s_memory_where_it_was(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    plugin = _plugin(tmp_path / "plugin")
    pythonpath = ":".join([str(plugin), *(p for p in sys.path if "plugin_pkg" in p)])
    process = _start(
        data_dir,
        port,
        LOOM_ADMIN_TOKEN=TOKEN,
        LOOM_MAX_NODE_OUTPUT_BYTES=str(300 * 1024 * 1024),
        PYTHONPATH=pythonpath,
    )
    try:
        _wait_ready(base, process)
        body, _ = _gql(
            base,
            """mutation($input: WorkflowInput!) {
                 createWorkflow(input: $input) { ... on Workflow { id } } }""",
            {
                "input": {
                    "name": "Big output",
                    "nodes": [
                        {"id": "start", "name": "Start", "type": "manual_trigger"},
                        {"id": "big", "name": "Big", "type": "rss.big"},
                    ],
                    "edges": [{"source": "start", "target": "big"}],
                }
            },
        )
        workflow_id = body["data"]["createWorkflow"]["id"]
        body, _ = _gql(
            base,
            "mutation($id: ID!) { executeWorkflow(id: $id) { ... on Execution { id } } }",
            {"id": workflow_id},
        )
        execution_id = body["data"]["executeWorkflow"]["id"]
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            body, _ = _gql(
                base, "query($id: ID!) { execution(id: $id) { status } }", {"id": execution_id}
            )
            status = body["data"]["execution"]["status"]
            if status not in ("QUEUED", "RUNNING"):
                break
            time.sleep(0.2)
        assert status == "SUCCEEDED"

        read = """query($id: ID!) { execution(id: $id) {
            nodeRuns { nodeId outputPage(maxBytes: 1000) { items total truncated nextOffset } }
        } }"""
        _gql(base, read, {"id": execution_id})  # the first read warms what every read uses
        before_mb = _rss_mb(process.pid)
        sizes = []
        for _ in range(READS):
            body, size = _gql(base, read, {"id": execution_id})
            sizes.append(size)
            page = next(
                run["outputPage"]
                for run in body["data"]["execution"]["nodeRuns"]
                if run["nodeId"] == "big"
            )
            (marker,) = page["items"]
            assert marker["$truncated"] is True and marker["bytes"] == CHARS + 8
            assert page["total"] == ITEMS and page["truncated"] and page["nextOffset"] == 1
        after_mb = _rss_mb(process.pid)
    finally:
        _stop(process)
    print(f"RSS before the reads {before_mb:.0f} MB, after {READS} reads {after_mb:.0f} MB")
    assert max(sizes) < 2000, sizes
    assert after_mb <= before_mb * 1.10, (before_mb, after_mb)
