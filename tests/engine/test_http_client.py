"""The outbound HTTP client against real local servers: the SSRF guard (IP literals,
hostnames resolving to loopback, mapped addresses, redirects), explicitly allowed networks,
redirect handling, credentials dropped across origins, size limits and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from engine.http_client import Auth, DestinationRefused, HttpClient, HttpError, NetworkPolicy

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


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    serve, client: HttpClient
) -> None:
    other = await serve({"/landing": ok})

    async def same(_: web.Request) -> web.Response:
        raise web.HTTPFound("/hop")

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{other.base}/landing")

    first = await serve({"/start": same, "/hop": hop})
    auth = Auth(headers={"Authorization": "Bearer s3cret"}, query={"api_key": "k3y"})
    response = await client.request("GET", f"{first.base}/start", auth=auth)
    assert response.status == 200
    assert response.url == f"{other.base}/landing"
    # Same origin: the credential went along; another origin: it did not.
    assert [r.headers.get("Authorization") for r in first.seen] == ["Bearer s3cret"] * 2
    assert [r.query.get("api_key") for r in first.seen] == ["k3y"] * 2
    (landing,) = other.seen
    assert "Authorization" not in landing.headers
    assert "api_key" not in landing.query


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


async def test_only_http_urls(client: HttpClient) -> None:
    with pytest.raises(HttpError, match="only http and https"):
        await client.request("GET", "file:///etc/passwd")
