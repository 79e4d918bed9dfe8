"""Query limits (depth, aliases, tokens, body size) and the masking of unexpected errors."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from storage import workflows
from tests.factories import CREATE, GET, UPDATE, create_workflow, only, workflow_input


def _settings(**limits):
    return Settings(_env_file=None, token_cache_s=0.0, **limits)


@pytest.fixture
async def limited_client(database, registry):
    """Makes clients of apps built with the given limits."""
    clients: list[httpx.AsyncClient] = []

    async def make(**limits):
        app = create_app(_settings(**limits), database=database, registry=registry)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def _single_error(response):
    """The one error of a request error (no `data`; a 200 for an `application/json` client)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert "data" not in body
    (error,) = body["errors"]
    return error


DEEP = """{ workflows { edges { node { createdBy { personalWorkspace { id } } } } } }"""


async def test_depth_limit(alice, limited_client):
    assert (await alice.post(DEEP)).status_code == 200  # depth 6 is fine by default
    http = await limited_client(max_query_depth=4)
    response = await http.post(
        "/graphql", json={"query": DEEP}, headers={"Authorization": f"Bearer {alice.token}"}
    )
    error = _single_error(response)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "exceeds maximum operation depth of 4" in error["message"]


async def test_depth_limit_applies_to_the_default_schema(alice):
    nested = "{ viewer " + "{ a " * 14 + "}" * 15
    errors = (await alice.request_error(nested))["errors"]
    messages = [e["message"] for e in errors]
    assert any("exceeds maximum operation depth of 12" in m for m in messages), messages
    assert {e["extensions"]["code"] for e in errors} == {"GRAPHQL_VALIDATION_FAILED"}


async def test_depth_limit_sees_through_fragments(alice, limited_client):
    http = await limited_client(max_query_depth=4)
    query = """
      query { workflows { edges { node { ...W } } } }
      fragment W on Workflow { createdBy { personalWorkspace { id } } }
    """
    response = await http.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {alice.token}"}
    )
    assert "exceeds maximum operation depth" in _single_error(response)["message"]


async def test_alias_limit(alice):
    ok = "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(30)) + " }"
    assert (await alice.post(ok)).status_code == 200
    too_many = "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(31)) + " }"
    error = _single_error(await alice.post(too_many))
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "31 aliases found" in error["message"]
    assert "30" in error["message"]


async def test_alias_limit_stops_mutations_before_they_run(alice, db_state):
    body = " ".join(
        f'm{i}: createWorkflow(input: {{name: "w{i}", nodes: [], edges: []}}) {{ __typename }}'
        for i in range(31)
    )
    before = await db_state()
    error = _single_error(await alice.post(f"mutation {{ {body} }}"))
    assert "aliases" in error["message"]
    assert await db_state() == before


async def test_token_limit(alice):
    fields = " ".join("id" for _ in range(5000))
    error = _single_error(await alice.post(f"{{ viewer {{ {fields} }} }}"))
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "more than 5000 tokens" in error["message"]


async def test_token_limit_is_configurable(alice, limited_client):
    http = await limited_client(max_query_tokens=5)
    response = await http.post(
        "/graphql",
        json={"query": "{ viewer { id name role } }"},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert "more than 5 tokens" in _single_error(response)["message"]


async def test_page_size_limit_is_configurable(alice, limited_client):
    http = await limited_client(max_page_size=5)
    response = await http.post(
        "/graphql",
        json={"query": "{ workflows(first: 6) { totalCount } }"},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert response.status_code == 200  # a field error: the request itself was fine
    assert response.json()["data"] is None
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 0 and 5" in error["message"]


async def test_graph_size_limit_is_configurable(alice, limited_client, db_state):
    http = await limited_client(max_graph_nodes=3)
    headers = {"Authorization": f"Bearer {alice.token}"}
    before = await db_state()
    response = await http.post(
        "/graphql",
        json={"query": CREATE, "variables": {"input": workflow_input()}},
        headers=headers,
    )
    assert response.json()["data"]["createWorkflow"]["__typename"] == "Workflow"
    response = await http.post(
        "/graphql",
        json={
            "query": CREATE,
            "variables": {
                "input": workflow_input(
                    nodes=[{"id": f"n{i}", "name": f"n{i}", "type": "noop"} for i in range(4)],
                    edges=[],
                )
            },
        },
        headers=headers,
    )
    result = response.json()["data"]["createWorkflow"]
    assert [p["code"] for p in result["problems"]] == ["TOO_MANY_NODES"]
    assert len((await db_state())["workflows"]) == len(before["workflows"]) + 1


# Body size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_body_over_the_limit_is_413(alice, limited_client, db_state, declared):
    http = await limited_client(max_body_bytes=2048)
    headers = {"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"}
    payload = httpx.Request(
        "POST",
        "http://t",
        json={"query": CREATE, "variables": {"input": workflow_input("x" * 4000)}},
    ).read()
    assert len(payload) > 2048
    before = await db_state()
    if declared:
        response = await http.post("/graphql", content=payload, headers=headers)
    else:

        async def chunks():
            for start in range(0, len(payload), 512):
                yield payload[start : start + 512]

        response = await http.post("/graphql", content=chunks(), headers=headers)
    assert response.status_code == 413, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "2048" in error["message"]
    assert await db_state() == before


async def test_body_under_the_limit_passes(alice, limited_client):
    http = await limited_client(max_body_bytes=2048)
    response = await http.post(
        "/graphql",
        json={"query": CREATE, "variables": {"input": workflow_input("small")}},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert response.status_code == 200
    assert response.json()["data"]["createWorkflow"]["__typename"] == "Workflow"


async def test_default_body_limit_is_4_mib(alice, db_state):
    payload = b'{"query": "{ viewer { id } }", "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    response = await alice.http.post(
        "/graphql",
        content=payload,
        headers={"Authorization": f"Bearer {alice.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_invalid_content_length_is_400(alice):
    http = alice.http
    request = http.build_request(
        "POST", "/graphql", content=b"{}", headers={"Authorization": f"Bearer {alice.token}"}
    )
    request.headers["Content-Length"] = "-5"
    response = await http.send(request)
    assert response.status_code == 400


# Unexpected errors are masked, and logged with the request id the client sees


def _explode(*args, **kwargs):
    raise RuntimeError("secret detail: password=hunter2")


async def test_unexpected_error_in_a_query_is_masked_and_logged(alice, monkeypatch, caplog):
    created = await create_workflow(alice)
    monkeypatch.setattr(workflows, "get_workflow", _explode)
    caplog.set_level(logging.ERROR, logger="loom.graphql")
    response = await alice.post(GET, {"id": created["id"]})
    assert response.status_code == 200  # the request was fine; a field failed
    assert "secret" not in response.text and "hunter2" not in response.text
    body = response.json()
    assert body["data"] == {"workflow": None}
    (error,) = body["errors"]
    match = re.fullmatch(r"Internal server error \(request id (\w+)\)", error["message"])
    assert match, error["message"]
    request_id = match.group(1)
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    assert error["path"] == ["workflow"]
    (record,) = [r for r in caplog.records if r.name == "loom.graphql"]
    assert request_id in record.getMessage()
    assert record.exc_info is not None
    assert "secret detail" in caplog.text
    assert "Traceback" in caplog.text
    assert "_explode" in caplog.text


async def test_unexpected_error_in_a_mutation_is_masked_and_rolls_back(
    alice, monkeypatch, caplog, db_state
):
    created = await create_workflow(alice)

    async def update_then_explode(*args, **kwargs):
        await original(*args, **kwargs)
        raise RuntimeError("secret detail")

    original = workflows.update_draft
    monkeypatch.setattr(workflows, "update_draft", update_then_explode)
    before = await db_state()
    response = await alice.post(UPDATE, {"id": created["id"], "input": workflow_input("x"), "v": 1})
    assert "secret" not in response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["message"].startswith("Internal server error (request id ")
    assert await db_state() == before
    assert error["extensions"]["requestId"] in caplog.text


async def test_each_request_has_its_own_request_id(alice, monkeypatch):
    monkeypatch.setattr(workflows, "get_workflow", _explode)
    ids = set()
    for _ in range(3):
        response = await alice.post(GET, {"id": "x"})
        ids.add(response.json()["errors"][0]["extensions"]["requestId"])
    assert len(ids) == 3


async def test_expected_errors_are_not_logged(alice, caplog):
    caplog.set_level(logging.DEBUG, logger="loom.graphql")
    await alice.post("{ viewer { nope } }")
    await alice.post("{ workflows(first: -1) { totalCount } }")
    await alice.post('{ workflows(after: "junk") { totalCount } }')
    result = only(await alice.gql(UPDATE, {"id": "x", "input": workflow_input(), "v": 1}))
    assert result["__typename"] == "NotFoundError"
    assert [r for r in caplog.records if r.name == "loom.graphql"] == []


async def test_readable_errors_keep_their_message(alice):
    response = await alice.post('{ workflows(after: "junk") { totalCount } }')
    (error,) = response.json()["errors"]
    assert error["message"] == "invalid cursor 'junk'"
    assert "requestId" not in error["extensions"]
