"""`loom run` with HTTP Request nodes, against a real local HTTP server: the server's guard
and settings, and clear errors for what only the server has (credentials, other workflows)
or what cannot run at all."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from server.run_command import EXIT_FAILED, EXIT_SUCCEEDED, run_workflow_file
from server.settings import Settings
from tests.factories import edge, node

LOOM = Path(sys.executable).parent / "loom"
LOOPBACK_ALLOWED = Settings(http_allowed_networks=["127.0.0.1/32"])
NOTHING_ALLOWED = Settings(http_allowed_networks=[])


@dataclass
class LocalApi:
    """A real HTTP server on 127.0.0.1 (in a thread: `loom run` runs its own event loop)."""

    base: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
def api() -> Iterator[LocalApi]:
    local = LocalApi()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            seen = {
                "method": self.command,
                "path": self.path,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "body": body,
            }
            local.seen.append(seen)
            encoded = json.dumps(seen).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = do_POST = answer

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    local.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield local
    server.shutdown()
    thread.join()
    server.server_close()


def http_workflow(parameters: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "name": "Call an API",
        "nodes": [
            node("start", "Start", "manual_trigger"),
            node("call", "Call", "http_request", parameters=parameters, **fields),
        ],
        "edges": [edge("start", "call")],
        "input": {"order": 7},
    }


def run(tmp_path: Path, workflow: dict[str, Any], settings: Settings) -> tuple[int, Any, str]:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow), encoding="utf-8")
    console = Console(file=io.StringIO(), width=400)
    output = io.StringIO()
    code = run_workflow_file(path, None, console, output=output, settings=settings)
    assert isinstance(console.file, io.StringIO)
    printed = output.getvalue()
    return code, json.loads(printed) if printed else None, console.file.getvalue()


def test_an_http_request_node_runs_under_loom_run(tmp_path: Path, api: LocalApi) -> None:
    workflow = http_workflow(
        {
            "method": "POST",
            "url": f"{api.base}/orders/{{{{ $json.order }}}}",
            "headers": [
                {"name": "X-Items", "value": "{{ $input }}"},
                {"name": "X-Flags", "value": "{{ {'ok': true, 'none': null} }}"},
            ],
            "query": [{"name": "dry", "value": "{{ false }}"}],
            "bodyType": "json",
            "jsonBody": {"items": "{{ $input }}"},
        }
    )
    code, output, progress = run(tmp_path, workflow, LOOPBACK_ALLOWED)
    assert code == EXIT_SUCCEEDED, progress
    (answer,) = output
    assert (answer["method"], answer["path"]) == ("POST", "/orders/7?dry=false")
    # `$input` used as a value is its items, as JSON; in a header or the query, values read
    # as expressions show them (JSON, `false`), never in Python's spelling.
    assert json.loads(answer["body"]) == {"items": [{"order": 7}]}
    assert answer["headers"]["x-items"] == '[{"order":7}]'
    assert answer["headers"]["x-flags"] == '{"ok":true,"none":null}'


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/private",
        "http://localhost:{port}/private",
        "http://[::127.0.0.1]:{port}/private",
        "http://[2002:7f00:1::1]:{port}/private",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_loom_run_refuses_private_destinations_naming_the_setting(
    tmp_path: Path, api: LocalApi, url: str
) -> None:
    port = api.base.rsplit(":", 1)[1]
    before = len(api.seen)
    workflow = http_workflow({"url": url.format(port=port), "retry": {"maxAttempts": 1}})
    code, output, progress = run(tmp_path, workflow, NOTHING_ALLOWED)
    assert code == EXIT_FAILED
    assert output is None
    assert "HTTP_DESTINATION_REFUSED: node 'Call': destination " in progress
    assert "LOOM_HTTP_ALLOWED_NETWORKS setting allows them" in progress
    assert len(api.seen) == before


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://", "it has no host, as in https://example.com/path"),
        ("ht!tp://x", "it must start with http:// or https://"),
        ("http://exa mple.com", "the host is not a valid name"),
        ("http://[::1", "the IPv6 address in brackets is not closed or not valid"),
        ("http://example.com:99999/", "the port must be a number from 1 to 65535"),
        ("http://1.2.3/", "the host is not a valid IPv4 address (four numbers from 0 to 255)"),
    ],
)
def test_a_malformed_url_says_what_is_wrong_with_it(tmp_path: Path, url: str, problem: str) -> None:
    code, _, progress = run(tmp_path, http_workflow({"url": url}), LOOPBACK_ALLOWED)
    assert code == EXIT_FAILED
    assert (
        f"INVALID_PARAMETER: node 'Call': Parameter 'url' is not a valid URL: {problem}" in progress
    ), progress
    assert "Error" not in progress.replace("INVALID_PARAMETER", "")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"timeoutSeconds": "{{ 'soon' }}"},
            "Parameter 'timeoutSeconds' must be a number of at least 0.1, got \"soon\"",
        ),
        ({"url": "{{ 42 }}"}, "Parameter 'url' must be an http or https URL, got 42"),
        (
            {"headers": [{"name": "X-Bad", "value": "a\r\nInjected: 1"}]},
            "HTTP_INVALID_HEADER: node 'Call': the value of header 'X-Bad' holds a line break",
        ),
    ],
)
def test_parameters_an_expression_got_wrong_are_named(
    tmp_path: Path, api: LocalApi, parameters: dict[str, Any], message: str
) -> None:
    workflow = http_workflow({"url": f"{api.base}/x", **parameters})
    code, _, progress = run(tmp_path, workflow, LOOPBACK_ALLOWED)
    assert code == EXIT_FAILED
    assert message in progress, progress
    assert "NODE_CRASHED" not in progress


def test_credentials_need_the_server(tmp_path: Path, api: LocalApi) -> None:
    before = len(api.seen)
    workflow = http_workflow({"url": f"{api.base}/secure"}, credentials={"bearer_token": "cred-1"})
    code, _, progress = run(tmp_path, workflow, LOOPBACK_ALLOWED)
    assert code == EXIT_FAILED
    assert (
        "CREDENTIALS_UNAVAILABLE: node 'Call': credential 'cred-1' (bearer_token) cannot be "
        "used: `loom run` has no credentials" in progress
    ), progress
    assert len(api.seen) == before


def test_node_types_that_cannot_run_here_say_why(tmp_path: Path) -> None:
    workflow = {
        "name": "Unrunnable",
        "nodes": [
            node("start", "Start", "manual_trigger"),
            node("greet", "Greet", "acme.greet", parameters={"greeting": "hi"}, onError="CONTINUE"),
            node("sub", "Sub", "execute_workflow", parameters={"workflowId": "wf-9"}),
        ],
        "edges": [edge("start", "greet"), edge("greet", "sub")],
    }
    code, _, progress = run(tmp_path, workflow, LOOPBACK_ALLOWED)
    assert code == EXIT_FAILED
    assert (
        "NOT_RUNNABLE: node 'Greet': node type 'acme.greet' cannot run: its package describes "
        "it for the editor but gives it no behaviour" in progress
    ), progress
    assert (
        "SUBWORKFLOWS_UNAVAILABLE: node 'Sub': `loom run` runs one workflow file, without a "
        "database: calling workflow 'wf-9' needs the server" in progress
    ), progress


def _loom_run(path: Path, cwd: Path, allowed: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOOM_")}
    if allowed is not None:
        env["LOOM_HTTP_ALLOWED_NETWORKS"] = allowed
    return subprocess.run(
        [str(LOOM), "run", str(path)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_loom_run_process_reads_the_servers_setting(tmp_path: Path, api: LocalApi) -> None:
    """As a real process, from a directory without `.env`: refused by default, reached once
    `LOOM_HTTP_ALLOWED_NETWORKS` allows loopback."""
    path = tmp_path / "call.json"
    path.write_text(json.dumps(http_workflow({"url": f"{api.base}/from-cli"})), encoding="utf-8")
    before = len(api.seen)
    refused = _loom_run(path, tmp_path, None)
    assert refused.returncode == EXIT_FAILED, refused.stderr
    assert "HTTP_DESTINATION_REFUSED" in refused.stderr
    assert "LOOM_HTTP_ALLOWED_NETWORKS" in refused.stderr
    assert len(api.seen) == before
    allowed = _loom_run(path, tmp_path, '["127.0.0.1/32"]')
    assert allowed.returncode == EXIT_SUCCEEDED, allowed.stderr
    assert json.loads(allowed.stdout)[0]["path"] == "/from-cli"
    assert len(api.seen) == before + 1
