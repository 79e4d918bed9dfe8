"""The declarative node type example of docs/node-types.md runs, in order, on a fresh
`loom serve`, against the page's own stand-in CRM (started from the page's code), and
answers what the page shows."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.distributed.cluster import free_port
from tests.docs.doc_examples import read_page
from tests.docs.runner import Runner, base_env
from tests.docs.test_api_examples import (  # noqa: F401 (fixtures used by name)
    DOCUMENTED_HOST,
    TOKEN_PLACEHOLDER,
    Loom,
    _text,
    database_url,
    loom,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "node-types.md"
SECTION = "## Declarative node types"
DOCUMENTED_CRM = "127.0.0.1:8001"


def _section(tmp_path: Path) -> Path:
    """The section alone, as a page: the rest of node-types.md shows fragments."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    path = tmp_path / "declarative.md"
    path.write_text(text[start : end if end != -1 else None], encoding="utf-8")
    return path


@pytest.fixture
async def crm(tmp_path: Path) -> AsyncIterator[str]:
    """The page's stand-in CRM, run from the page's own code on a free port."""
    page = read_page(_section(tmp_path))
    (server,) = [block for block in page.not_run if "ThreadingHTTPServer" in block.text]
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", server.text, env={**os.environ, "PORT": str(port)}
    )
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.timeout(300)
async def test_the_declarative_type_example_runs_in_order(
    loom: Loom,  # noqa: F811
    crm: str,
    tmp_path: Path,
) -> None:
    page = read_page(_section(tmp_path))
    assert page.steps, "the section has no example"
    rewrites = {
        DOCUMENTED_HOST: loom.base.removeprefix("http://"),
        TOKEN_PLACEHOLDER: loom.token,
        DOCUMENTED_CRM: crm,
    }
    source = _section(tmp_path).read_text(encoding="utf-8")
    for documented in (DOCUMENTED_HOST, DOCUMENTED_CRM):
        assert documented in source, f"the page no longer uses {documented}: update the test"
    runner = Runner(f"{loom.base}/graphql", loom.token, rewrites, base_env())
    for step in page.steps:
        try:
            await runner.run(step)
        except AssertionError as exc:
            log = _text(tmp_path / "serve.log")
            raise AssertionError(
                f"docs/node-types.md: {exc}\n--- server log (end) ---\n{log[-4000:]}"
            ) from exc
