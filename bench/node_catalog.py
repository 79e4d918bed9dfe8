"""Catalog benchmark (issue 15): `nodeTypes` with every field, 500 registered types.

    .venv/bin/python bench/node_catalog.py [--types 500] [--requests 200]

In one process (SQLite in a temporary folder, embedded mode), the app is asked for
`nodeTypes` with every field over the ASGI transport (no sockets), with the built-ins plus
generated types (copies of the built-ins under `bench.*` names) up to `--types`. Prints the
median and p90 of a request, the same for `nodeTypes(search: ...)`, and, as a floor measured
in the same run, a plain Starlette route answering the same JSON (built once, encoded per
request with orjson, as Loom's GraphQL view encodes) through the same transport.

Without the cache of catalog results (resolvers/node_types.py, `NodeTypeResults`), every
request executes the query: about 90 ms for 500 types with every field.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from engine.node_types import NodeTypeRegistry, load_registry
from resolvers.node_types import _results as node_type_results
from server.app import create_app
from server.settings import Settings
from storage import accounts
from storage.db import Database
from storage.migrate import upgrade

FIELDS = """
  name version versions displayName description group credentialKinds parametersSchema
  inputs { name displayName acceptsMany } outputs { name displayName acceptsMany }
  category subcategory icon documentationUrl subtitle defaultParameters
  parameterHints { parameter placeholder widget showWhen }
"""
ALL = f"{{ nodeTypes {{ {FIELDS} }} }}"
SEARCH = f'{{ nodeTypes(search: "http") {{ {FIELDS} }} }}'


def registry_of(count: int) -> NodeTypeRegistry:
    registry = load_registry()
    builtins = [node_type for node_type in registry.latest() if "." not in node_type.name]
    index = 0
    while len(registry.latest()) < count:
        model = builtins[index % len(builtins)]
        name = f"bench.{model.name}_{index:04d}"
        registry.register(dataclasses.replace(model, name=name))
        index += 1
    return registry


async def timed(client: httpx.AsyncClient, send: Any, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await send(client)
        response.raise_for_status()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"p50 {statistics.median(times) * 1000:7.2f} ms   p90 {p90 * 1000:7.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    registry = registry_of(args.types)
    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite+aiosqlite:///{folder}/loom.db")
        await upgrade(database)
        token = await accounts.create_user_with_token(database, "bench", accounts.ROLE_ADMIN)
        settings = Settings(_env_file=None, secret_key="bench-secret-key")  # type: ignore[call-arg]
        app = create_app(settings, database=database, registry=registry)
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:

            async def all_types(client: httpx.AsyncClient) -> httpx.Response:
                return await client.post("/graphql", json={"query": ALL}, headers=headers)

            async def uncached(client: httpx.AsyncClient) -> httpx.Response:
                node_type_results.clear()  # as after a change of the registry
                return await all_types(client)

            async def search(client: httpx.AsyncClient) -> httpx.Response:
                return await client.post("/graphql", json={"query": SEARCH}, headers=headers)

            answer = (await all_types(client)).json()
            listed = len(answer["data"]["nodeTypes"])
            body = answer

            async def plain(request: Any) -> Response:
                await request.body()
                return Response(orjson.dumps(body), media_type="application/json")

            floor_app = Starlette(routes=[Route("/plain", plain, methods=["POST"])])
            floor_transport = httpx.ASGITransport(app=floor_app)
            async with httpx.AsyncClient(
                transport=floor_transport, base_url="http://floor"
            ) as floor_client:

                async def floor(client: httpx.AsyncClient) -> httpx.Response:
                    return await client.post("/plain", json={"query": ALL})

                rounds: dict[str, list[float]] = {
                    "all": [],
                    "search": [],
                    "floor": [],
                    "uncached": [],
                }
                for _ in range(3):  # alternating, so that the machine's mood hits all alike
                    rounds["all"] += await timed(client, all_types, args.requests // 3)
                    rounds["search"] += await timed(client, search, args.requests // 3)
                    rounds["floor"] += await timed(floor_client, floor, args.requests // 3)
                    rounds["uncached"] += await timed(client, uncached, 5)
        await database.dispose()
    size = len(str(body))
    print(f"nodeTypes over {listed} types ({size / 1e6:.1f} MB of JSON), in process:")
    print(f"  every field       {summary(rounds['all'])}   (target p50 at most 10 ms)")
    print(f"  search 'http'     {summary(rounds['search'])}")
    print(f"  executed afresh   {summary(rounds['uncached'])}   (first request after a change)")
    print(f"  floor: the same JSON from a plain route   {summary(rounds['floor'])}")
    ratio = statistics.median(rounds["all"]) / statistics.median(rounds["floor"])
    print(f"  ratio to the floor: {ratio:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
