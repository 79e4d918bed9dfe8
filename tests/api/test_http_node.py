"""The HTTP Request node in workflows run over GraphQL, against a real local API: every
credential kind, retries honouring Retry-After, response handling, the SSRF guard, and
secrets that never show up in what the API returns."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from server.app import create_app
from tests.api.test_credentials import create as create_credential
from tests.api.test_executions import EXECUTION_FIELDS, create, execute, finished
from tests.conftest import Caller
from tests.factories import edge, node

SECRET = "tok-7f3a-never-shown"


@dataclass
class MockApi:
    base: str = ""
    seen: list[web.Request] = field(default_factory=list)
    tokens_issued: int = 0
    failures_left: int = 0
    retry_after: str | None = None
    hits: list[float] = field(default_factory=list)


@pytest.fixture
async def api() -> AsyncIterator[MockApi]:
    mock = MockApi()

    async def echo(request: web.Request) -> web.Response:
        mock.seen.append(request)
        mock.hits.append(time.monotonic())
        if mock.failures_left:
            mock.failures_left -= 1
            headers = {"Retry-After": mock.retry_after} if mock.retry_after else {}
            return web.Response(status=429, headers=headers, text="slow down")
        return web.json_response(
            {
                "method": request.method,
                "authorization": request.headers.get("Authorization"),
                "x_api_key": request.headers.get("X-Api-Key"),
                "query": dict(request.query),
                "body": (await request.text()) or None,
            }
        )

    async def items(_: web.Request) -> web.Response:
        return web.json_response([{"id": 1}, {"id": 2}, {"id": 3}])

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "client_credentials"
        mock.tokens_issued += 1
        return web.json_response(
            {"access_token": f"issued-{mock.tokens_issued}", "expires_in": 3600}
        )

    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="nope")

    async def redirect(request: web.Request) -> web.Response:
        target = request.query["to"]
        return web.Response(status=int(request.query["status"]), headers={"Location": target})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/items", items)
    app.router.add_post("/token", token)
    app.router.add_get("/missing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    mock.base = f"http://127.0.0.1:{port}"
    yield mock
    await runner.cleanup()


async def close_http(app: Any) -> None:
    """The app's HTTP client (its lifespan would close it; these tests run without)."""
    await app.state.services.submitter.runner.resources.http.close()


@pytest.fixture
async def app(database, settings, registry) -> AsyncIterator[Any]:
    # With the request middleware on (tracing, JSON logs, access log): the secret search
    # covers what it writes.
    allowed = settings.model_copy(
        update={
            "http_allowed_networks": ["127.0.0.1/32"],
            "tracing": "otlp",
            "log_format": "json",
            "access_log": True,
        }
    )
    app = create_app(allowed, database=database, registry=registry)
    yield app
    await close_http(app)


async def run(
    app: Any, caller: Caller, parameters: dict[str, Any], credentials: dict[str, str] | None = None
) -> dict[str, Any]:
    workflow_id = await create(
        caller,
        [
            node("start", "Start", "manual_trigger"),
            node(
                "call", "Call", "http_request", parameters=parameters, credentials=credentials or {}
            ),
        ],
        [edge("start", "call")],
    )
    started = await execute(caller, workflow_id)
    assert started["__typename"] == "Execution", started
    return await finished(app, caller, started["id"])


def call_run(execution: dict[str, Any]) -> dict[str, Any]:
    return next(run for run in execution["nodeRuns"] if run["nodeId"] == "call")


@pytest.mark.parametrize(
    ("kind", "data", "expect"),
    [
        ("bearer_token", {"token": SECRET}, {"authorization": f"Bearer {SECRET}"}),
        ("api_key_header", {"headerName": "X-Api-Key", "apiKey": SECRET}, {"x_api_key": SECRET}),
        ("api_key_query", {"paramName": "key", "apiKey": SECRET}, {"query": {"key": SECRET}}),
        (
            "basic_auth",
            {"username": "me", "password": SECRET},
            {"authorization": "Basic bWU6dG9rLTdmM2EtbmV2ZXItc2hvd24="},
        ),
        ("custom_headers", {"headers": {"X-Api-Key": SECRET}}, {"x_api_key": SECRET}),
    ],
)
async def test_each_credential_kind_signs_the_request(
    app, alice: Caller, api: MockApi, kind: str, data: dict[str, Any], expect: dict[str, Any]
) -> None:
    credential = await create_credential(alice, name=kind, kind=kind, data=data)
    execution = await run(
        app, alice, {"url": f"{api.base}/echo"}, credentials={kind: credential["id"]}
    )
    assert execution["status"] == "SUCCEEDED", execution
    (item,) = call_run(execution)["output"]
    for key, value in expect.items():
        assert item[key] == value


async def test_oauth2_client_credentials_fetch_and_cache_a_token(
    app, alice: Caller, api: MockApi
) -> None:
    credential = await create_credential(
        alice,
        name="oauth",
        kind="oauth2_client_credentials",
        data={"tokenUrl": f"{api.base}/token", "clientId": "loom", "clientSecret": SECRET},
    )
    for _ in range(2):
        execution = await run(
            app,
            alice,
            {"url": f"{api.base}/echo"},
            credentials={"oauth2_client_credentials": credential["id"]},
        )
        (item,) = call_run(execution)["output"]
        assert item["authorization"] == "Bearer issued-1"
    assert api.tokens_issued == 1
    # The cache knows the credential by a digest of its fields, not by its secret.
    from engine.nodes import http

    assert http._TOKENS
    assert all(SECRET.encode() not in digest for _, digest in http._TOKENS)


@dataclass
class Received:
    """What a second origin was sent: each request's headers and body."""

    base: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # with their query strings


@pytest.fixture
async def other_origin() -> AsyncIterator[Received]:
    """Another origin (another port): it records everything and hands out a token."""
    received = Received()

    async def anything(request: web.Request) -> web.Response:
        received.requests.append((dict(request.headers), await request.read()))
        received.paths.append(request.path_qs)
        return web.json_response({"access_token": "from-the-other-origin", "expires_in": 60})

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    received.base = f"http://127.0.0.1:{port}"
    yield received
    await runner.cleanup()


@pytest.mark.parametrize("sent_in", ["header", "body"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_an_oauth2_token_url_redirecting_elsewhere_never_gets_the_secret_there(
    app, alice: Caller, api: MockApi, other_origin: Received, status: int, sent_in: str
) -> None:
    token_url = f"{api.base}/redirect?status={status}&to={other_origin.base}/token"
    credential = await create_credential(
        alice,
        name=f"oauth {status} {sent_in}",
        kind="oauth2_client_credentials",
        # The header is the default.
        data={"tokenUrl": token_url, "clientId": "loom-client", "clientSecret": SECRET}
        | ({"clientAuthentication": "body"} if sent_in == "body" else {}),
    )
    execution = await run(
        app,
        alice,
        {"url": f"{api.base}/echo"},
        credentials={"oauth2_client_credentials": credential["id"]},
    )
    assert execution["status"] == "SUCCEEDED", call_run(execution)["error"]
    (token_request,) = other_origin.requests
    headers, body = token_request
    # Neither the secret nor the client id, in any header or in the body.
    assert "Authorization" not in headers
    for secret in (SECRET, "loom-client", base64.b64encode(f"loom-client:{SECRET}".encode())):
        text = secret if isinstance(secret, str) else secret.decode()
        assert text not in json.dumps(headers) and text.encode() not in body
    if status in (307, 308):
        assert body == b"grant_type=client_credentials"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("bearer_token", {"token": SECRET}),
        ("api_key_header", {"headerName": "X-Api-Key", "apiKey": SECRET}),
        ("api_key_query", {"paramName": "key", "apiKey": SECRET}),
        ("basic_auth", {"username": "me", "password": SECRET}),
        ("custom_headers", {"headers": {"X-Secret": SECRET}}),
        ("oauth2_client_credentials", {"clientId": "c", "clientSecret": SECRET}),
    ],
)
async def test_a_request_url_redirecting_elsewhere_gets_no_credential_there(
    app,
    alice: Caller,
    api: MockApi,
    other_origin: Received,
    kind: str,
    data: dict[str, Any],
) -> None:
    if kind == "oauth2_client_credentials":
        data = {**data, "tokenUrl": f"{api.base}/token"}
    credential = await create_credential(alice, name=kind, kind=kind, data=data)
    execution = await run(
        app,
        alice,
        {
            "method": "POST",
            "url": f"{api.base}/redirect?status=307&to={other_origin.base}/landing",
            "bodyType": "json",
            "jsonBody": {"order": 7},
        },
        credentials={kind: credential["id"]},
    )
    assert execution["status"] == "SUCCEEDED", call_run(execution)["error"]
    ((headers, body),) = other_origin.requests
    assert body == b'{"order": 7}'  # a 307 re-sends the node's own body
    sent = json.dumps([headers, other_origin.paths])
    assert "Authorization" not in headers
    for secret in (SECRET, "issued-", base64.b64encode(f"me:{SECRET}".encode()).decode()):
        assert secret not in sent


async def test_an_oauth2_token_url_redirecting_to_a_refused_destination_fails_the_node(
    app, alice: Caller, api: MockApi
) -> None:
    credential = await create_credential(
        alice,
        name="oauth to metadata",
        kind="oauth2_client_credentials",
        data={
            "tokenUrl": f"{api.base}/redirect?status=307&to=http://169.254.169.254/token",
            "clientId": "c",
            "clientSecret": SECRET,
        },
    )
    execution = await run(
        app,
        alice,
        {"url": f"{api.base}/echo"},
        credentials={"oauth2_client_credentials": credential["id"]},
    )
    error = call_run(execution)["error"]
    assert error["type"] == "HTTP_DESTINATION_REFUSED"
    assert error["message"] == (
        "node 'Call': the OAuth2 token request failed: destination 169.254.169.254 is not "
        "allowed: a link-local address (cloud metadata services live there); private and "
        "local networks are reached only if the server's LOOM_HTTP_ALLOWED_NETWORKS setting "
        "allows them"
    )
    assert [request.path for request in api.seen] == []  # /echo was never called


async def test_429_is_retried_after_what_the_server_asks(app, alice: Caller, api: MockApi) -> None:
    api.failures_left, api.retry_after = 2, "1"
    execution = await run(
        app, alice, {"url": f"{api.base}/echo", "retry": {"maxAttempts": 3, "backoffSeconds": 0}}
    )
    assert execution["status"] == "SUCCEEDED", (execution["error"], call_run(execution)["error"])
    assert len(api.hits) == 3
    assert api.hits[1] - api.hits[0] >= 0.95
    assert api.hits[2] - api.hits[1] >= 0.95


async def test_retries_used_up_fail_the_node_with_the_status(
    app, alice: Caller, api: MockApi
) -> None:
    api.failures_left = 5
    execution = await run(
        app, alice, {"url": f"{api.base}/echo", "retry": {"maxAttempts": 2, "backoffSeconds": 0}}
    )
    error = call_run(execution)["error"]
    assert (error["type"], error["details"]) == ("HTTP_STATUS", {"status": 429})
    assert len(api.hits) == 2


async def test_bodies_formats_and_splitting(app, alice: Caller, api: MockApi) -> None:
    posted = await run(
        app,
        alice,
        {"method": "POST", "url": f"{api.base}/echo", "bodyType": "json", "jsonBody": {"a": 1}},
    )
    assert posted["status"] == "SUCCEEDED", call_run(posted)["error"]
    (item,) = call_run(posted)["output"]
    assert (item["method"], json.loads(item["body"])) == ("POST", {"a": 1})
    split = await run(app, alice, {"url": f"{api.base}/items", "splitArray": True})
    assert call_run(split)["output"] == [{"id": 1}, {"id": 2}, {"id": 3}]
    full = await run(app, alice, {"url": f"{api.base}/items", "fullResponse": True})
    assert full["status"] == "SUCCEEDED", call_run(full)["error"]
    (response,) = call_run(full)["output"]
    assert response["status"] == 200 and response["body"] == [{"id": 1}, {"id": 2}, {"id": 3}]
    text = await run(app, alice, {"url": f"{api.base}/items", "responseFormat": "text"})
    assert call_run(text)["output"] == [{"body": '[{"id": 1}, {"id": 2}, {"id": 3}]'}]


async def test_a_4xx_fails_the_node_naming_the_url_without_its_secrets(
    app, alice: Caller, api: MockApi
) -> None:
    with_password = api.base.replace("http://", "http://user:hunter2@")
    execution = await run(app, alice, {"url": f"{with_password}/missing?key=abc123"})
    error = call_run(execution)["error"]
    assert error["type"] == "HTTP_STATUS" and error["details"] == {"status": 404}
    assert "/missing" in error["message"]
    assert "abc123" not in error["message"] and "hunter2" not in error["message"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://1.2.3/", "the host is not a valid IPv4 address (four numbers from 0 to 255)"),
        ("http://exa mple.com/", "the host is not a valid name"),
        ("http://[::1", "the IPv6 address in brackets is not closed or not valid"),
    ],
)
async def test_a_malformed_url_fails_the_node_in_the_users_words(
    app, alice: Caller, url: str, problem: str
) -> None:
    execution = await run(app, alice, {"url": url})
    error = call_run(execution)["error"]
    assert error["type"] == "INVALID_PARAMETER"
    assert error["details"] == {"parameter": "url"}
    assert error["message"].startswith(
        f"node 'Call': Parameter 'url' is not a valid URL: {problem}"
    )
    assert "Error" not in error["message"]


async def test_private_destinations_are_refused_without_an_allowed_network(
    database, settings, registry, alice: Caller, api: MockApi
) -> None:
    import dataclasses

    import httpx

    app = create_app(settings, database=database, registry=registry)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http:
            caller = dataclasses.replace(alice, http=http)
            port = api.base.rsplit(":", 1)[1]
            for url in (f"{api.base}/echo", f"http://localhost:{port}/echo"):
                execution = await run(app, caller, {"url": url, "retry": {"maxAttempts": 1}})
                assert call_run(execution)["error"]["type"] == "HTTP_DESTINATION_REFUSED"
    finally:
        await close_http(app)
    assert api.seen == []


async def test_another_workspaces_credential_is_not_used_at_run_time(
    app, alice: Caller, bob: Caller, api: MockApi
) -> None:
    theirs = await create_credential(bob, name="b", kind="bearer_token", data={"token": SECRET})
    # Saving refuses the reference (test_credentials); a run-time lookup is scoped too: the
    # provider only finds credentials of the execution's workspace.
    provider = app.state.services.submitter.runner.resources.credentials
    viewer = await alice.gql("{ viewer { personalWorkspace { id } } }")
    workspace_id = viewer["viewer"]["personalWorkspace"]["id"]
    with pytest.raises(LookupError):
        await provider.fields(workspace_id, "bearer_token", theirs["id"])
    mine = await create_credential(alice, name="a", kind="bearer_token", data={"token": SECRET})
    assert await provider.fields(workspace_id, "bearer_token", mine["id"]) == {"token": SECRET}
    with pytest.raises(LookupError):  # the kind must match too
        await provider.fields(workspace_id, "basic_auth", mine["id"])


async def test_secrets_never_appear_in_what_the_api_returns(
    app, alice: Caller, api: MockApi
) -> None:
    credential = await create_credential(
        alice, name="c", kind="bearer_token", data={"token": SECRET}
    )
    ok = await run(
        app, alice, {"url": f"{api.base}/items"}, credentials={"bearer_token": credential["id"]}
    )
    failed = await run(
        app, alice, {"url": f"{api.base}/missing"}, credentials={"bearer_token": credential["id"]}
    )
    answers = [ok, failed, await alice.gql("{ credentials { id fields secretFields } }")]
    for execution_id in (ok["id"], failed["id"]):
        answers.append(
            await alice.gql(
                f"query($id: ID!) {{ execution(id: $id) {{ {EXECUTION_FIELDS} }} }}",
                {"id": execution_id},
            )
        )
    assert SECRET not in json.dumps(answers)


async def test_a_secret_search_of_everything_finds_nothing(
    app,
    alice: Caller,
    api: MockApi,
    db_state: Any,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> None:
    """Workflows use and misuse credentials, started by hand and by webhooks; then every API
    answer, every webhook response, every live event, every log record (also as JSON lines,
    LOOM_LOG_FORMAT=json, with every field), every span (tracing on) and every stored row
    (events, node runs, outputs, credentials) is searched for the secret values. (The mock's
    /echo would hand the Authorization header back as output, which the user asked for: it
    is not used here.)"""
    from engine import tracing
    from server.telemetry import log_handler
    from tests.tracing_helpers import spans_in_memory

    caplog.set_level(logging.DEBUG)
    json_lines = io.StringIO()
    handler = log_handler(settings.model_copy(update={"log_format": "json"}), json_lines)
    tracing.bind_log_context(True)
    handler.addFilter(lambda record: not record.name.startswith(NOT_LOOM))
    logging.getLogger().addHandler(handler)
    try:
        with spans_in_memory() as spans:
            await _search_everything(app, alice, api, db_state, caplog, json_lines, spans)
    finally:
        logging.getLogger().removeHandler(handler)
        tracing.bind_log_context(False)


# Not Loom's logs: the mock API's access log (the remote side) and the test client's (httpx
# logs each URL the test requests), both in this process.
NOT_LOOM = ("aiohttp.access", "httpx")


async def _search_everything(
    app: Any,
    alice: Caller,
    api: MockApi,
    db_state: Any,
    caplog: pytest.LogCaptureFixture,
    json_lines: io.StringIO,
    spans: Any,
) -> None:
    # Every event committed, as the live event bus hands it to subscribers.
    live: list[Any] = []
    app.state.services.submitter.runner.recorder.on_commit(live.extend)
    secrets = {
        "bearer_token": {"token": SECRET + "-bearer"},
        "basic_auth": {"username": "u", "password": SECRET + "-basic"},
        "api_key_query": {"paramName": "key", "apiKey": SECRET + "-query"},
        "oauth2_client_credentials": {
            "tokenUrl": f"{api.base}/token",
            "clientId": "c",
            "clientSecret": SECRET + "-oauth",
        },
        "custom_headers": {"headers": {"X-Secret": SECRET + "-header"}},
    }
    answers: list[Any] = []
    for kind, data in secrets.items():
        credential = await create_credential(alice, name=kind, kind=kind, data=data)
        answers.append(credential)
        for parameters in (
            {"url": f"{api.base}/items", "fullResponse": True},
            {"url": f"{api.base}/missing"},
            {"url": "http://169.254.169.254/latest", "retry": {"maxAttempts": 1}},
        ):
            answers.append(await run(app, alice, parameters, credentials={kind: credential["id"]}))
    broken = await create_credential(
        alice,
        name="broken oauth",
        kind="oauth2_client_credentials",
        data={"tokenUrl": f"{api.base}/missing", "clientId": "c", "clientSecret": SECRET + "-x"},
    )
    failed = await run(
        app,
        alice,
        {"url": f"{api.base}/items"},
        credentials={"oauth2_client_credentials": broken["id"]},
    )
    assert call_run(failed)["error"]["type"] == "OAUTH2_TOKEN_FAILED"
    answers.append(failed)
    answers.append(await alice.gql("{ credentials { id name kind fields secretFields } }"))
    webhook_answers = await _webhook_answers(alice, api, secrets)
    # Secrets where a request's path and a GraphQL variable hold them.
    for path in (f"/webhook/{SECRET}-path", f"/Webhook/{SECRET}-path", f"//webhook/{SECRET}"):
        assert (await alice.http.post(path, json={})).status_code == 404
    await alice.gql("query($id: ID!) { execution(id: $id) { id } }", {"id": SECRET + "-var"})
    texts = {
        "answers": json.dumps(answers),
        "webhook responses": json.dumps(webhook_answers),
        "live events": json.dumps([event.to_json() for event in live], default=str),
        "stored": json.dumps(await db_state()),
        "logs": "\n".join(
            record.getMessage() for record in caplog.records if not record.name.startswith(NOT_LOOM)
        ),
        "json logs": json_lines.getvalue(),
        "spans": "\n".join(span.to_json() for span in spans.get_finished_spans()),
    }
    assert [json.loads(line) for line in texts["json logs"].splitlines()]
    assert '"loom.node.type": "http_request"' in texts["spans"]
    assert '"/webhook/{path:path}"' in texts["spans"]
    assert '"logger":"loom.access"' in texts["json logs"]
    for where, text in texts.items():
        at = text.find(SECRET)
        assert at < 0, (where, text[max(0, at - 300) : at + 100])


async def _webhook_answers(
    alice: Caller, api: MockApi, secrets: dict[str, dict[str, Any]]
) -> list[Any]:
    """Webhooks whose runs use credentials (succeeding and failing), and one guarded by a
    credential, called with and without it: status, headers and body of every answer."""
    from tests.api.test_webhooks import hook_workflow

    bearer = await create_credential(
        alice, name="hook bearer", kind="bearer_token", data=secrets["bearer_token"]
    )
    guard = await create_credential(
        alice,
        name="hook guard",
        kind="api_key_header",
        data={"headerName": "X-Hook-Key", "apiKey": SECRET + "-guard"},
    )
    credentials = {"bearer_token": bearer["id"]}
    for path, url in (("secret-ok", "/items"), ("secret-missing", "/missing")):
        await hook_workflow(
            alice,
            {"path": path, "responseMode": "last_node"},
            [
                node(
                    "call",
                    "Call",
                    "http_request",
                    parameters={"url": f"{api.base}{url}", "fullResponse": True},
                    credentials=credentials,
                )
            ],
        )
    await hook_workflow(
        alice,
        {"path": "secret-guarded", "responseMode": "respond_node"},
        [node("answer", "Answer", "respond_to_webhook", parameters={"status": 201})],
        credentials={"api_key_header": guard["id"]},
    )
    answers = []
    for path, headers in (
        ("secret-ok", {}),
        ("secret-missing", {}),
        ("secret-guarded", {"X-Hook-Key": "wrong"}),
        ("secret-guarded", {"X-Hook-Key": SECRET + "-guard"}),
    ):
        response = await alice.http.post(f"/webhook/{path}", json={"a": 1}, headers=headers)
        answers.append([response.status_code, dict(response.headers), response.text])
    assert [answer[0] for answer in answers] == [200, 500, 401, 201], answers
    return answers
