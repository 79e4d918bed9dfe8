"""GraphiQL works offline and with Loom's bearer tokens: the page and everything it loads come
from Loom itself, and a new user gets from an empty page to a query result in a real headless
Chromium (tests/js/graphiql.mjs, driven with Playwright)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from server.graphiql import ASSETS_DIR
from tests.api.test_executions import create, execute
from tests.conftest import Caller, services_required
from tests.factories import node as node_spec
from tests.live import JS_DIR, http_url, node_with, serve


class _References(HTMLParser):
    """Every `src` and `href` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return scheme, parts.hostname, parts.port


async def test_the_page_references_only_its_own_origin(http: httpx.AsyncClient) -> None:
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    references = _References()
    references.feed(page.text)
    assert len(references.found) >= 8, references.found  # scripts and styles
    for reference in references.found:
        if reference.startswith("data:"):
            continue  # inline, no host
        absolute = urljoin(str(page.url), reference)
        assert _origin(absolute) == _origin(str(page.url)), reference
        asset = await http.get(absolute)
        assert asset.status_code == 200, reference


def test_every_asset_has_its_license_beside_it() -> None:
    packages = [path for path in ASSETS_DIR.iterdir() if path.is_dir()]
    assert {path.name for path in packages} == {"react", "react-dom", "graphiql", "plugin-explorer"}
    for package in packages:
        assert (package / "LICENSE").read_text().startswith("MIT License"), package


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "chromium missing (apt-get install chromium)"
        if services_required():
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)
    return found


@pytest.fixture
async def url(app: Any) -> AsyncIterator[str]:
    """The app the test's callers post to is the one served (its events are live there)."""
    async with serve(app) as ws_url:
        yield http_url(ws_url)


@pytest.mark.timeout(180)
async def test_a_new_user_runs_a_query_in_graphiql(
    chromium: str, app: Any, url: str, alice: Caller, tmp_path: Path
) -> None:
    node = node_with("playwright-core")
    workflow_id = await create(alice, [node_spec("start", "Start", "manual_trigger")], [])
    execution_id = str((await execute(alice, workflow_id))["id"])
    await app.state.services.submitter.wait(execution_id)
    profile = tmp_path / "profile"  # a fresh browser: no token, no GraphiQL state
    profile.mkdir()
    process = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "graphiql.mjs"),
        url,
        alice.token,
        chromium,
        str(profile),
        execution_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 150)
    assert process.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert "failure" not in report, (report["failure"], report)
    assert report["pageErrors"] == []
    # Without a token: the schema fetch is refused, and the page says what to do.
    assert "401" in report["notices"]["withoutToken"]
    for how in ("token in the field above", '{"Authorization": "Bearer <token>"}', "Headers tab"):
        assert how in report["notices"]["withoutToken"]
    assert report["notices"]["withToken"] == ""
    assert report["tokenAfterReload"] == alice.token  # remembered in this browser
    for step in ("withToken", "afterReload", "withHeadersTab"):
        assert report["results"][step] == {"data": {step: {"name": "alice"}}}
    # Run at once after typing it, a subscription goes over the websocket, not HTTP.
    finished = {"type": "EXECUTION_FINISHED", "status": "SUCCEEDED"}
    assert report["results"]["subscription"] == {"data": {"executionEvents": finished}}
    assert any(seen.startswith("ws://") for seen in report["requests"])
    # Offline-safe: nothing but this server, websockets included.
    assert report["requests"], report
    foreign = [seen for seen in report["requests"] if _origin(seen) != _origin(url)]
    assert foreign == []
