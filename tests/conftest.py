"""Shared fixtures: a migrated database per backend, the ASGI app, a GraphQL client, users.

Every test that takes `database` (directly or through `client`) runs on SQLite and, when
PostgreSQL is reachable, on PostgreSQL too. In CI (`CI=true` or `LOOM_REQUIRE_SERVICES=1`)
an unreachable PostgreSQL or Redis is an error, never a silent skip.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlmodel import SQLModel

import server.app
from engine.node_types import NodeTypeRegistry, load_registry
from schema.root import build_schema
from server.app import create_app
from server.graphql_http import APPLICATION_JSON, GRAPHQL_RESPONSE_JSON
from server.settings import Settings
from storage import accounts
from storage.db import Database
from storage.migrate import upgrade

# The test plugin (`acme.greet`) is never installed: pytest's `pythonpath` makes its dist-info
# visible to importlib.metadata in this process, and this to the processes tests start.
PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")])
)

PG_URL = os.environ.get(
    "LOOM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LOOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true" or os.environ.get("LOOM_REQUIRE_SERVICES") == "1"
    )


async def _postgres_reachable() -> str | None:
    import asyncpg

    try:
        connection = await asyncio.wait_for(
            asyncpg.connect(PG_URL.replace("postgresql+asyncpg", "postgresql")), timeout=3
        )
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


_pg_problem: str | bool | None = False  # False: not checked yet


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize(
            "backend",
            [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
            scope="session",
        )


async def require_postgres() -> None:
    """Skip when PostgreSQL is unreachable, or fail when CI requires it."""
    global _pg_problem
    if _pg_problem is False:
        _pg_problem = await _postgres_reachable()
    if _pg_problem:
        message = f"PostgreSQL at {PG_URL} unreachable ({_pg_problem})"
        if services_required():
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)


@pytest.fixture(scope="session")
async def migrated(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """A database of the given backend with the schema migrated, shared by the session."""
    if backend == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "loom.db"
        database = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(database)
        yield database
        await database.dispose()
        return
    await require_postgres()
    schema = f"loom_test_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    async with admin.engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(PG_URL, pg_search_path=schema)
    await upgrade(database)
    yield database
    await database.dispose()
    async with admin.engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await admin.dispose()


@pytest.fixture
async def database(migrated: Database) -> AsyncIterator[Database]:
    """The migrated database, emptied before each test."""
    async with migrated.engine.begin() as connection:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name != "lock_anchor":
                await connection.execute(table.delete())
    yield migrated


DbState = Callable[[], Awaitable[dict[str, list[str]]]]


# Rows that are no request's data: a serving process's own liveness (written in the
# background) and the SQLite row a transaction updates to take a workspace's lock.
_NOT_DATA = frozenset({"process_heartbeats", "lock_anchor"})


@pytest.fixture
def db_state(database: Database) -> DbState:
    """Every stored row, as comparable text: assert a failed request changed nothing."""

    async def dump() -> dict[str, list[str]]:
        state: dict[str, list[str]] = {}
        async with database.engine.connect() as connection:
            for table in SQLModel.metadata.sorted_tables:
                if table.name in _NOT_DATA:
                    continue
                rows = (await connection.execute(table.select())).mappings().all()
                state[table.name] = sorted(
                    json.dumps(dict(row), default=str, sort_keys=True) for row in rows
                )
        return state

    return dump


@pytest.fixture
def settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, token_cache_s=0.0, secret_key="test-secret-key-for-credentials"
    )


@pytest.fixture(scope="session")
def registry() -> NodeTypeRegistry:
    """The installed node types, loaded once: checking every schema takes a while."""
    return load_registry()


# One schema per set of limits for the whole run: Strawberry's validation cache is keyed by
# the schema, so a fresh schema per test would validate every query anew (~20 ms each).
_shared_schema = functools.cache(build_schema)


@pytest.fixture(autouse=True)
def shared_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.app, "build_schema", _shared_schema)


@pytest.fixture
async def app(database: Database, settings: Settings, registry: NodeTypeRegistry) -> Any:
    return create_app(settings, database=database, registry=registry)


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as client:
        yield client


@dataclass
class Caller:
    """A user with a token, able to send GraphQL operations."""

    http: httpx.AsyncClient
    user_id: str
    name: str
    token: str

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        accept: str | None = None,
        **request: Any,
    ) -> httpx.Response:
        """POST an operation (`request`: more members of the body, e.g. `operationName`)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if accept is not None:
            headers["Accept"] = accept
        return await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}, **request},
            headers=headers,
        )

    async def request_error(
        self, query: str, variables: dict[str, Any] | None = None, **request: Any
    ) -> dict[str, Any]:
        """Send a request that must fail before execution, as a client of each media type;
        check the GraphQL-over-HTTP answer (no `data`; 200 for `application/json`, 400 for
        `application/graphql-response+json`, the same body) and return the body."""
        bodies = []
        for accept, status in ((APPLICATION_JSON, 200), (GRAPHQL_RESPONSE_JSON, 400)):
            response = await self.post(query, variables, accept, **request)
            assert response.status_code == status, (accept, response.text)
            assert response.headers["content-type"] == accept
            body = response.json()
            assert "data" not in body, body
            assert body["errors"], body
            bodies.append(body)
        assert bodies[0] == bodies[1]
        return bodies[0]

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run an operation that must succeed without errors; returns `data`."""
        response = await self.post(query, variables)
        body = response.json()
        assert response.status_code == 200, body
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


MakeCaller = Callable[..., Awaitable[Caller]]


@pytest.fixture
def make_caller(database: Database, http: httpx.AsyncClient) -> MakeCaller:
    async def make(name: str | None = None, admin: bool = False) -> Caller:
        name = name or f"user-{uuid.uuid4().hex[:8]}"
        role = accounts.ROLE_ADMIN if admin else accounts.ROLE_MEMBER
        async with database.transaction() as session:
            user = await accounts.create_user(session, name, role)
            _, token = await accounts.create_token(session, user.id, "test")
        return Caller(http=http, user_id=user.id, name=name, token=token)

    return make


@pytest.fixture
async def alice(make_caller: MakeCaller) -> Caller:
    return await make_caller("alice")


@pytest.fixture
async def bob(make_caller: MakeCaller) -> Caller:
    return await make_caller("bob")


@pytest.fixture
async def redis_url() -> str:
    """The test Redis; unreachable means skip, or fail in CI."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:
        message = f"Redis at {REDIS_URL} unreachable ({exc})"
        if services_required():
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)
    finally:
        await client.aclose()
    return REDIS_URL
