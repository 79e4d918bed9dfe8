"""The outbound HTTP client against real local servers: the SSRF guard (IP literals,
hostnames resolving to loopback, mapped addresses, redirects), explicitly allowed networks,
redirect handling, credentials dropped across origins, size limits and timeouts."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from engine.http_client import (
    Auth,
    DestinationRefused,
    HttpClient,
    HttpError,
    InvalidUrl,
    NetworkPolicy,
)

LOOPBACK = NetworkPolicy.from_strings(["127.0.0.1/32"])


@dataclass
class Server:
    base: str
    port: int
    seen: list[web.Request] = field(default_factory=list)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Handler]], Awaitable[Server]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler]) -> Server:
        app = web.Application()
        server = Server("", 0)

        def recording(handler: Handler) -> Handler:
            async def handle(request: web.Request) -> web.StreamResponse:
                server.seen.append(request)
                return await handler(request)

            return handle

        for path, handler in routes.items():
            app.router.add_route("*", path, recording(handler))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        server.base, server.port = f"http://127.0.0.1:{port}", port
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient(LOOPBACK)
    yield http
    await http.close()


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path, "query": dict(request.query)})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/ok",
        "http://localhost:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[fd00::1]/",
    ],
    ids=["loopback", "name of loopback", "mapped", "metadata", "private", "unique-local"],
)
async def test_private_and_local_destinations_are_refused_by_default(serve, url) -> None:
    server = await serve({"/ok": ok})
    http = HttpClient(NetworkPolicy())
    try:
        with pytest.raises(DestinationRefused):
            await http.request("GET", url.format(port=server.port), timeout_s=5)
    finally:
        await http.close()
    assert server.seen == []


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[2002:7f00:1::1]",
        "[2001:0:7f00:1::f7f7:f7f7]",
        "[64:ff9b::a9fe:a9fe]",
        "[64:ff9b:1::7f00:1]",
        "[2001:4860::5efe:7f00:1]",
    ],
)
async def test_ipv6_literals_carrying_a_local_ipv4_address_are_refused(host: str) -> None:
    http = HttpClient(NetworkPolicy())
    try:
        with pytest.raises(DestinationRefused) as refused:
            await http.request("GET", f"http://{host}/latest/meta-data", timeout_s=5)
    finally:
        await http.close()
    message = str(refused.value)
    assert message.startswith("destination ") and " is not allowed: a" in message
    assert message.endswith(
        "private and local networks are reached only if the server's "
        "LOOM_HTTP_ALLOWED_NETWORKS setting allows them"
    )


class StaticResolver(AbstractResolver):
    """DNS answers chosen by the test: what a hostile DNS server could answer."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[host]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    "address", ["::127.0.0.1", "::ffff:127.0.0.1", "2002:7f00:1::1", "64:ff9b::a9fe:a9fe"]
)
async def test_names_resolving_to_a_form_carrying_a_local_address_are_refused(
    serve, address: str
) -> None:
    server = await serve({"/ok": ok})
    http = HttpClient(NetworkPolicy(), resolver=StaticResolver({"evil.test": address}))
    try:
        with pytest.raises(DestinationRefused) as refused:
            await http.request("GET", f"http://evil.test:{server.port}/ok", timeout_s=5)
    finally:
        await http.close()
    message = str(refused.value)
    assert message.startswith("destination evil.test resolves only to addresses that are not")
    assert "LOOM_HTTP_ALLOWED_NETWORKS" in message
    # What the name resolved to is the server's business: not told to the workflow author.
    assert address not in message and "127.0.0.1" not in message
    assert server.seen == []


async def test_a_resolved_name_in_an_allowed_network_is_reached(serve) -> None:
    server = await serve({"/ok": ok})
    http = HttpClient(LOOPBACK, resolver=StaticResolver({"api.test": "127.0.0.1"}))
    try:
        response = await http.request("GET", f"http://api.test:{server.port}/ok")
    finally:
        await http.close()
    assert response.status == 200
    assert len(server.seen) == 1


async def test_a_cookie_one_request_received_never_rides_on_another(serve) -> None:
    """One client serves every workspace: a Set-Cookie is not remembered for anyone."""

    async def sets_cookie(request: web.Request) -> web.Response:
        response = web.json_response({})
        response.set_cookie("session", "WORKSPACE_A_SECRET", domain="api.test")
        return response

    server = await serve({"/login": sets_cookie, "/ok": ok})
    http = HttpClient(LOOPBACK, resolver=StaticResolver({"api.test": "127.0.0.1"}))
    try:
        await http.request("GET", f"http://api.test:{server.port}/login")
        await http.request("GET", f"http://api.test:{server.port}/ok")
    finally:
        await http.close()
    assert [request.path for request in server.seen] == ["/login", "/ok"]
    assert "Cookie" not in server.seen[1].headers


async def test_an_allowed_network_is_reachable(serve, client: HttpClient) -> None:
    server = await serve({"/ok": ok})
    response = await client.request("GET", f"{server.base}/ok", query=[("a", "1")])
    assert response.status == 200
    assert response.body == b'{"path": "/ok", "query": {"a": "1"}}'


async def test_a_redirect_to_a_refused_destination_is_not_followed(
    serve, client: HttpClient
) -> None:
    async def away(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/iam")

    server = await serve({"/away": away})
    with pytest.raises(DestinationRefused):
        await client.request("GET", f"{server.base}/away")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_no_credential_follows_a_redirect_to_another_origin(
    serve, client: HttpClient, status: int
) -> None:
    """Whatever the redirect's status, a hop to another origin (here: another port) carries
    none of the credential (header, query parameter, form field) nor the request's own
    credential headers; a 307 or 308 re-sends the body without the credential's fields."""
    bodies: dict[str, list[bytes]] = {"first": [], "other": []}

    def redirect(to: str, server: str) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            bodies[server].append(await request.read())
            if not to:
                return web.Response(text="landed")
            return web.Response(status=status, headers={"Location": to})

        return handle

    other = await serve({"/landing": redirect("", "other")})
    first = await serve(
        {
            "/start": redirect("/hop", "first"),
            "/hop": redirect(f"{other.base}/landing", "first"),
        }
    )
    auth = Auth(
        headers={"Authorization": "Bearer s3cret"},
        query={"api_key": "k3y"},
        form={"client_secret": "f0rm-s3cret"},
    )
    response = await client.request(
        "POST",
        f"{first.base}/start",
        headers={"Cookie": "session=c00kie", "Proxy-Authorization": "Basic cHJveHk=", "X-Id": "7"},
        data={"grant_type": "client_credentials"},
        auth=auth,
    )
    assert response.status == 200
    assert response.url == f"{other.base}/landing"
    # Same origin: the credential went along.
    assert [r.headers.get("Authorization") for r in first.seen] == ["Bearer s3cret"] * 2
    assert [r.query.get("api_key") for r in first.seen] == ["k3y"] * 2
    assert b"client_secret=f0rm-s3cret" in bodies["first"][0]
    # Another origin: nothing of it.
    (landing,) = other.seen
    for header in ("Authorization", "Cookie", "Proxy-Authorization"):
        assert header not in landing.headers
    assert "api_key" not in landing.query
    assert landing.headers["X-Id"] == "7"
    (body,) = bodies["other"]
    if status in (307, 308):
        assert landing.method == "POST"
        assert body == b"grant_type=client_credentials"
    else:
        assert landing.method == "GET"
        assert body == b""


async def test_credential_form_fields_go_to_the_origin_in_the_body(
    serve, client: HttpClient
) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(dict(await request.post()))

    server = await serve({"/token": echo})
    response = await client.request(
        "POST",
        f"{server.base}/token",
        data={"grant_type": "client_credentials"},
        auth=Auth(form={"client_id": "loom", "client_secret": "f0rm-s3cret"}),
    )
    assert json.loads(response.body) == {
        "grant_type": "client_credentials",
        "client_id": "loom",
        "client_secret": "f0rm-s3cret",
    }


async def test_redirects_are_bounded(serve, client: HttpClient) -> None:
    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    server = await serve({"/loop": loop})
    with pytest.raises(HttpError) as failure:
        await client.request("GET", f"{server.base}/loop", max_redirects=3)
    assert failure.value.error_type == "HTTP_TOO_MANY_REDIRECTS"
    assert len(server.seen) == 4


async def test_see_other_turns_a_post_into_a_get(serve, client: HttpClient) -> None:
    async def created(_: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/ok")

    server = await serve({"/create": created, "/ok": ok})
    response = await client.request("POST", f"{server.base}/create", json_body={"a": 1})
    assert response.status == 200
    assert [request.method for request in server.seen] == ["POST", "GET"]


async def test_responses_over_the_limit_are_refused(serve, client: HttpClient) -> None:
    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(5):
            await response.write(b"y" * 1000)
        return response

    server = await serve({"/big": big, "/streamed": streamed})
    for path in ("/big", "/streamed"):
        with pytest.raises(HttpError) as failure:
            await client.request("GET", f"{server.base}{path}", max_bytes=4096)
        assert failure.value.error_type == "HTTP_RESPONSE_TOO_LARGE"
    small = await client.request("GET", f"{server.base}/big", max_bytes=5000)
    assert len(small.body) == 5000


async def test_a_slow_server_times_out_retryably(serve, client: HttpClient) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)  # the slowness under test: well past the client's timeout
        return web.Response(text="late")

    server = await serve({"/slow": slow})
    with pytest.raises(HttpError) as failure:
        await client.request("GET", f"{server.base}/slow", timeout_s=0.3)
    assert failure.value.error_type == "HTTP_TIMEOUT"
    assert failure.value.retryable


async def test_a_closed_port_is_a_retryable_connection_failure(client: HttpClient) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(HttpError) as failure:
        await client.request("GET", f"http://127.0.0.1:{port}/", timeout_s=5)
    assert failure.value.error_type == "HTTP_CONNECTION_FAILED"
    assert failure.value.retryable


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "it must start with http:// or https://"),
        ("ht!tp://x", "it must start with http:// or https://"),
        ("", "it must start with http:// or https://"),
        ("http://", "it has no host"),
        ("http:/x", "it has no host"),
        ("http://:80/", "it has no host"),
        ("http://exa mple.com/", "the host is not a valid name"),
        ("http://a..b/", "the host is not a valid name"),
        ("http://" + "a" * 64 + ".com/", "the host is not a valid name"),
        ("http://1.2.3/", "the host is not a valid IPv4 address"),  # was InvalidUrlClientError
        ("http://2130706433/", "the host is not a valid IPv4 address"),
        ("http://[::1/", "the IPv6 address in brackets is not closed or not valid"),
        ("http://[::1]:99999/", "the port must be a number from 1 to 65535"),
        ("http://example.com:abc/", "the port must be a number from 1 to 65535"),
        ("http://example.com:0/", "the port must be a number from 1 to 65535"),
    ],
)
async def test_a_url_that_cannot_be_requested_says_why(
    client: HttpClient, url: str, reason: str
) -> None:
    with pytest.raises(InvalidUrl) as failure:
        await client.request("GET", url)
    assert failure.value.error_type == "HTTP_INVALID_URL"
    assert failure.value.reason.startswith(reason)
    assert "Error" not in str(failure.value)  # no Python or aiohttp class name


async def test_a_redirect_to_a_url_that_cannot_be_requested_says_so(
    serve, client: HttpClient
) -> None:
    async def bad(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "gopher://example.com/"})

    server = await serve({"/bad": bad})
    with pytest.raises(HttpError) as failure:
        await client.request("GET", f"{server.base}/bad")
    assert failure.value.error_type == "HTTP_INVALID_REDIRECT"
    assert str(failure.value) == (
        "127.0.0.1 redirected to a URL that cannot be requested: "
        "it must start with http:// or https://"
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Bad\nName": "1"}, "the header name 'X-Bad\\nName' is not valid"),
        ({"X-Token": "a\r\nInjected: yes"}, "the value of header 'X-Token' holds a line break"),
    ],
)
async def test_a_header_aiohttp_would_refuse_is_named(
    serve, client: HttpClient, headers: dict[str, str], message: str
) -> None:
    server = await serve({"/ok": ok})
    with pytest.raises(HttpError) as failure:
        await client.request("GET", f"{server.base}/ok", headers=headers)
    assert failure.value.error_type == "HTTP_INVALID_HEADER"
    assert str(failure.value).startswith(message)
    assert "Injected" not in str(failure.value)  # a value may be a secret: never quoted
    assert server.seen == []
