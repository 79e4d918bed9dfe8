"""Authentication, API tokens and the admin role."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import select

from server.app import create_app
from server.settings import Settings
from storage.db import Database
from storage.migrate import upgrade
from storage.models import ApiToken
from tests.factories import CREATE, create_workflow, only, workflow_input

QUERY = "{ viewer { id name } }"
MUTATION = 'mutation { deleteWorkflow(id: "x") { __typename } }'

TOKEN_FIELDS = """
  __typename
  ... on CreatedApiToken { token apiToken { id name createdAt revokedAt } user { id name role } }
  ... on ValidationError { message problems { code field } }
  ... on NotFoundError { message id }
  ... on ForbiddenError { message }
"""
CREATE_USER = f"""
mutation($name: String!, $admin: Boolean! = false) {{
  createUser(name: $name, admin: $admin) {{ {TOKEN_FIELDS} }}
}}
"""
CREATE_TOKEN = f"""
mutation($name: String!, $userId: ID) {{
  createApiToken(name: $name, userId: $userId) {{ {TOKEN_FIELDS} }}
}}
"""
REVOKE_TOKEN = """
mutation($id: ID!) {
  revokeApiToken(id: $id) {
    __typename ... on ApiToken { id name revokedAt } ... on NotFoundError { message id }
  }
}
"""
VIEWER = "{ viewer { id name role personalWorkspace { id name } } }"


def _headers(kind, alice):
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "bad token": {"Authorization": "Bearer loom_not-a-real-token"},
        "basic scheme": {"Authorization": f"Basic {alice.token}"},
        "bare token": {"Authorization": alice.token},
        "oversized": {"Authorization": "Bearer " + "x" * 5000},
    }[kind]


async def _send(http, method, query, headers):
    if method == "GET":
        return await http.get("/graphql", params={"query": query}, headers=headers)
    return await http.post("/graphql", json={"query": query}, headers=headers)


def _assert_unauthenticated(response):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert "data" not in body  # nothing ran
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "authentication required" in error["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("operation", [QUERY, MUTATION], ids=["query", "mutation"])
@pytest.mark.parametrize(
    "kind", ["none", "empty bearer", "bad token", "basic scheme", "bare token", "oversized"]
)
async def test_missing_or_bad_token_is_401(http, alice, db_state, method, operation, kind):
    before = await db_state()
    response = await _send(http, method, operation, _headers(kind, alice))
    _assert_unauthenticated(response)
    assert await db_state() == before


async def test_unauthenticated_mutation_stores_nothing(http, db_state):
    before = await db_state()
    response = await http.post(
        "/graphql", json={"query": CREATE, "variables": {"input": workflow_input()}}
    )
    _assert_unauthenticated(response)
    assert await db_state() == before


async def test_unauthenticated_invalid_query_is_still_401(http):
    # Nothing about the schema is revealed before authentication.
    response = await http.post("/graphql", json={"query": "{ nope }"})
    _assert_unauthenticated(response)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("operation", [QUERY, MUTATION], ids=["query", "mutation"])
async def test_revoked_token_is_401(http, alice, method, operation):
    tokens = await alice.gql("{ apiTokens { id } }")
    (token,) = tokens["apiTokens"]
    revoked = only(await alice.gql(REVOKE_TOKEN, {"id": token["id"]}))
    assert revoked["__typename"] == "ApiToken"
    assert revoked["revokedAt"] is not None
    response = await _send(http, method, operation, {"Authorization": f"Bearer {alice.token}"})
    _assert_unauthenticated(response)


async def test_bearer_scheme_is_case_insensitive(http, alice):
    response = await http.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"bearer {alice.token}"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["viewer"]["name"] == "alice"


async def test_get_query_with_token_works(http, alice):
    response = await http.get(
        "/graphql", params={"query": QUERY}, headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"viewer": {"id": alice.user_id, "name": "alice"}}}


async def test_get_cannot_run_mutations(http, alice, db_state):
    before = await db_state()
    create = 'mutation { createWorkflow(input: {name: "x", nodes: [], edges: []}) { __typename } }'
    response = await http.get(
        "/graphql", params={"query": create}, headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert response.status_code == 405  # the GraphQL-over-HTTP spec's MUST
    assert response.headers["allow"] == "POST"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert "need POST" in error["message"]
    assert await db_state() == before


async def test_graphiql_page_loads_without_a_token(http):
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_viewer(alice):
    data = await alice.gql(VIEWER)
    viewer = data["viewer"]
    assert (viewer["id"], viewer["name"], viewer["role"]) == (alice.user_id, "alice", "member")
    assert viewer["personalWorkspace"]["name"] == "alice's workspace"


# Admins manage users and tokens.


async def test_admin_creates_a_user_whose_token_works(make_caller):
    admin = await make_caller("root", admin=True)
    created = only(await admin.gql(CREATE_USER, {"name": "  dave  "}))
    assert created["__typename"] == "CreatedApiToken"
    assert created["user"]["name"] == "dave"
    assert created["user"]["role"] == "member"
    assert created["apiToken"]["name"] == "default"
    assert created["apiToken"]["revokedAt"] is None
    assert created["token"].startswith("loom_")
    response = await admin.http.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {created['token']}"}
    )
    assert response.json()["data"]["viewer"]["name"] == "dave"
    promoted = only(await admin.gql(CREATE_USER, {"name": "erin", "admin": True}))
    assert promoted["user"]["role"] == "admin"


async def test_members_cannot_create_users(alice, db_state):
    before = await db_state()
    result = only(await alice.gql(CREATE_USER, {"name": "mallory", "admin": True}))
    assert result["__typename"] == "ForbiddenError"
    assert "admin" in result["message"]
    assert await db_state() == before


@pytest.mark.parametrize(
    ("name", "code"),
    [("", "EMPTY_NAME"), ("x" * 65, "NAME_TOO_LONG"), ("a\x00b", "INVALID_CHARACTER")],
)
async def test_create_user_validates_the_name(make_caller, db_state, name, code):
    admin = await make_caller("root", admin=True)
    before = await db_state()
    result = only(await admin.gql(CREATE_USER, {"name": name}))
    assert result["__typename"] == "ValidationError"
    assert [p["code"] for p in result["problems"]] == [code]
    assert await db_state() == before


async def test_create_user_refuses_a_taken_name(make_caller, alice, db_state):
    admin = await make_caller("root", admin=True)
    before = await db_state()
    result = only(await admin.gql(CREATE_USER, {"name": "alice"}))
    assert result["__typename"] == "ValidationError"
    assert [p["code"] for p in result["problems"]] == ["DUPLICATE_NAME"]
    assert await db_state() == before


async def test_users_lists_everyone_for_admins_only(make_caller, alice, bob):
    admin = await make_caller("root", admin=True)
    everyone = await admin.gql("{ users { name role } }")
    assert everyone["users"] == [
        {"name": "alice", "role": "member"},
        {"name": "bob", "role": "member"},
        {"name": "root", "role": "admin"},
    ]
    assert (await alice.gql("{ users { name } }"))["users"] == []


async def test_create_api_token_for_yourself(alice):
    created = only(await alice.gql(CREATE_TOKEN, {"name": "laptop"}))
    assert created["__typename"] == "CreatedApiToken"
    assert created["user"]["id"] == alice.user_id
    assert created["token"] != alice.token
    response = await alice.http.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {created['token']}"}
    )
    assert response.json()["data"]["viewer"]["name"] == "alice"
    tokens = (await alice.gql("{ apiTokens { id name revokedAt } }"))["apiTokens"]
    assert [t["name"] for t in tokens] == ["laptop", "test"]


async def test_members_cannot_create_tokens_for_others(alice, bob, db_state):
    before = await db_state()
    result = only(await bob.gql(CREATE_TOKEN, {"name": "steal", "userId": alice.user_id}))
    assert result["__typename"] == "ForbiddenError"
    assert await db_state() == before


async def test_admins_create_tokens_for_others(make_caller, alice):
    admin = await make_caller("root", admin=True)
    created = only(await admin.gql(CREATE_TOKEN, {"name": "ops", "userId": alice.user_id}))
    assert created["__typename"] == "CreatedApiToken"
    assert created["user"]["name"] == "alice"
    missing = only(await admin.gql(CREATE_TOKEN, {"name": "ops", "userId": "nobody"}))
    assert missing["__typename"] == "NotFoundError"
    assert missing["id"] == "nobody"


@pytest.mark.parametrize("name", ["", "   ", "x" * 129, "a\x00"])
async def test_create_api_token_validates_the_name(alice, db_state, name):
    before = await db_state()
    result = only(await alice.gql(CREATE_TOKEN, {"name": name}))
    assert result["__typename"] == "ValidationError"
    assert await db_state() == before


async def test_revoke_is_immediate_even_with_a_token_cache(database, registry, alice):
    cached = create_app(
        Settings(_env_file=None, token_cache_s=3600), database=database, registry=registry
    )
    transport = httpx.ASGITransport(app=cached)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http:
        second = await http.post(
            "/graphql",
            json={
                "query": 'mutation { createApiToken(name: "2") { ... on CreatedApiToken '
                "{ token apiToken { id } } } }"
            },
            headers={"Authorization": f"Bearer {alice.token}"},
        )
        other = second.json()["data"]["createApiToken"]
        other_headers = {"Authorization": f"Bearer {other['token']}"}
        assert (
            await http.post("/graphql", json={"query": QUERY}, headers=other_headers)
        ).is_success
        revoke = await http.post(
            "/graphql",
            json={"query": REVOKE_TOKEN, "variables": {"id": other["apiToken"]["id"]}},
            headers={"Authorization": f"Bearer {alice.token}"},
        )
        assert revoke.json()["data"]["revokeApiToken"]["__typename"] == "ApiToken"
        _assert_unauthenticated(
            await http.post("/graphql", json={"query": QUERY}, headers=other_headers)
        )


async def test_members_cannot_revoke_other_users_tokens(alice, bob, db_state):
    alice_token_id = (await alice.gql("{ apiTokens { id } }"))["apiTokens"][0]["id"]
    before = await db_state()
    result = only(await bob.gql(REVOKE_TOKEN, {"id": alice_token_id}))
    assert result == {
        "__typename": "NotFoundError",
        "message": result["message"],
        "id": alice_token_id,
    }
    assert await db_state() == before
    assert (await alice.gql(QUERY))["viewer"]["name"] == "alice"


async def test_admins_revoke_anyones_token(make_caller, alice, http):
    admin = await make_caller("root", admin=True)
    alice_token_id = (await alice.gql("{ apiTokens { id } }"))["apiTokens"][0]["id"]
    result = only(await admin.gql(REVOKE_TOKEN, {"id": alice_token_id}))
    assert result["__typename"] == "ApiToken"
    response = await http.post(
        "/graphql", json={"query": QUERY}, headers={"Authorization": f"Bearer {alice.token}"}
    )
    _assert_unauthenticated(response)


async def test_revoking_twice_keeps_the_first_time(alice):
    created = only(await alice.gql(CREATE_TOKEN, {"name": "tmp"}))
    token_id = created["apiToken"]["id"]
    first = only(await alice.gql(REVOKE_TOKEN, {"id": token_id}))
    second = only(await alice.gql(REVOKE_TOKEN, {"id": token_id}))
    assert first["revokedAt"] == second["revokedAt"] is not None


async def test_tokens_are_stored_hashed(database, alice):
    created = only(await alice.gql(CREATE_TOKEN, {"name": "laptop"}))
    plaintexts = [alice.token, created["token"]]
    async with database.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM api_tokens"))).all()
    dumped = repr(rows)
    for plaintext in plaintexts:
        assert plaintext not in dumped
        assert plaintext.removeprefix("loom_") not in dumped
    async with database.session() as session:
        hashes = set((await session.exec(select(ApiToken.token_hash))).all())
    assert hashes == {hashlib.sha256(t.encode()).hexdigest() for t in plaintexts}


async def test_token_secret_is_shown_only_at_creation(alice):
    only(await alice.gql(CREATE_TOKEN, {"name": "laptop"}))
    listed = await alice.request_error("{ apiTokens { token } }")
    assert listed["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_workflows_need_a_token_too(http, alice):
    await create_workflow(alice)
    response = await http.post("/graphql", json={"query": "{ workflows { totalCount } }"})
    _assert_unauthenticated(response)


# The command line.


async def _loom(tmp_path: Path, database_url: str, *args: str) -> tuple[int, str, str]:
    """Run the `loom` command of this virtual environment; returns (status, stdout, stderr)."""
    env = {**os.environ, "LOOM_DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("loom"),
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_cli_token_create_prints_a_working_token(tmp_path, registry):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    status, stdout, stderr = await _loom(
        tmp_path, url, "token", "create", "--user", "carol", "--create-database"
    )
    assert status == 0, stderr
    token = stdout.strip()
    assert token.startswith("loom_")
    status, stdout, stderr = await _loom(
        tmp_path, url, "token", "create", "--user", "carol", "--admin"
    )
    assert status == 0, stderr
    admin_token = stdout.strip()
    assert admin_token != token
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    try:
        await upgrade(database)  # already at head: a no-op
        app = create_app(Settings(_env_file=None), database=database, registry=registry)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http:
            for value in (token, admin_token):
                response = await http.post(
                    "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {value}"}
                )
                assert response.status_code == 200, response.text
                viewer = response.json()["data"]["viewer"]
                assert viewer["name"] == "carol"
                assert viewer["role"] == "admin"
            rejected = await http.post(
                "/graphql", json={"query": VIEWER}, headers={"Authorization": "Bearer loom_x"}
            )
            assert rejected.status_code == 401
            made_workflow = await http.post(
                "/graphql",
                json={"query": CREATE, "variables": {"input": workflow_input()}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert made_workflow.json()["data"]["createWorkflow"]["__typename"] == "Workflow"
    finally:
        await database.dispose()
