"""GraphQL over HTTP: media types, status codes, operation choice, and subscriptions, which
HTTP does not run (see server/graphql_http.py). The spec audit itself is test_spec_audit.py."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from server.app import create_app
from tests.api.test_executions import create, execute
from tests.conftest import Caller
from tests.factories import node
from tests.live import serve

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
SUBSCRIPTION = 'subscription { executionEvents(executionId: "x") { sequence } }'


# Content negotiation


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};charset=utf-8", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE};q=0.5", JSON),
        (f"{GRAPHQL_RESPONSE}, {JSON}", JSON),  # a tie: the type every client reads
        (f"{JSON};q=0, */*", GRAPHQL_RESPONSE),
        (f"*/*;q=0.1, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        ("text/html", JSON),  # neither accepted: still an answer the client can read
        ("garbage", JSON),
        (";;;,,", JSON),
        (f"{JSON};q=nan", JSON),
    ],
)
async def test_the_response_has_the_media_type_the_client_prefers(
    alice: Caller, accept: str | None, media_type: str
) -> None:
    ok = await alice.post("{ viewer { name } }", accept=accept)
    assert (ok.status_code, ok.headers["content-type"]) == (200, media_type)
    assert ok.json() == {"data": {"viewer": {"name": "alice"}}}
    headers = {} if accept is None else {"Accept": accept}
    anonymous = await alice.http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert (anonymous.status_code, anonymous.headers["content-type"]) == (401, media_type)


@pytest.mark.parametrize(("accept", "status"), [(JSON, 200), (GRAPHQL_RESPONSE, 400)])
@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{ viewer { name ", None, "GRAPHQL_PARSE_FAILED"),
        ("{ viewer { nope } }", None, "GRAPHQL_VALIDATION_FAILED"),
        ("query($n: Int!) { workflows(first: $n) { totalCount } }", {"n": "x"}, None),
        ("query($n: Int!) { workflows(first: $n) { totalCount } }", {"n": None}, None),
    ],
    ids=["parse", "validation", "variable type", "null variable"],
)
async def test_request_errors_have_no_data_and_a_negotiated_status(
    alice: Caller,
    accept: str,
    status: int,
    query: str,
    variables: dict[str, Any] | None,
    code: str | None,
) -> None:
    response = await alice.post(query, variables, accept=accept)
    assert (response.status_code, response.headers["content-type"]) == (status, accept)
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == (code or "GRAPHQL_VALIDATION_FAILED")


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE])
async def test_field_errors_keep_data_and_answer_200(alice: Caller, accept: str) -> None:
    response = await alice.post(
        '{ viewer { name } workflows(after: "") { totalCount } }', None, accept
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None  # `workflows` is non-null: the error reaches the root
    assert body["errors"][0]["path"] == ["workflows"]


@pytest.mark.parametrize("accept", [JSON, GRAPHQL_RESPONSE])
async def test_a_body_that_is_not_json_is_400_whatever_the_client_accepts(
    alice: Caller, accept: str
) -> None:
    response = await alice.http.post(
        "/graphql",
        content=b'{ "not a JSON',
        headers={
            "Authorization": f"Bearer {alice.token}",
            "Content-Type": JSON,
            "Accept": accept,
        },
    )
    assert (response.status_code, response.headers["content-type"]) == (400, accept)
    assert "data" not in response.json()


# Operation choice


async def test_a_named_operation_runs_beside_others(alice: Caller) -> None:
    document = (
        f"query Q {{ viewer {{ name }} }} {SUBSCRIPTION.replace('subscription', 'subscription S')}"
    )
    response = await alice.post(document, operationName="Q")
    assert response.json() == {"data": {"viewer": {"name": "alice"}}}


async def test_two_operations_without_a_name_run_nothing(alice: Caller, db_state: Any) -> None:
    before = await db_state()
    document = 'mutation A { createApiToken(name: "x") { __typename } } query B { viewer { name } }'
    body = await alice.request_error(document)
    assert body["errors"][0]["message"] == (
        "Must provide operation name if query contains multiple operations."
    )
    assert await db_state() == before


# Subscriptions need the websocket


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_subscription_over_http_names_the_websocket_endpoint(
    alice: Caller, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    headers = {"Authorization": f"Bearer {alice.token}"}
    if method == "POST":
        response = await alice.http.post("/graphql", json={"query": SUBSCRIPTION}, headers=headers)
    else:
        response = await alice.http.get("/graphql", params={"query": SUBSCRIPTION}, headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "WEBSOCKET_REQUIRED"
    assert "ws://loom.test/graphql" in error["message"]
    assert "graphql-transport-ws" in error["message"]
    # Refused, not failed: nothing logged by the request. (asyncio's "Task was destroyed"
    # records come from earlier tests' apps, whose writer tasks the garbage collector may
    # meet during this one: the `app` fixture runs no lifespan to stop them.)
    assert not [record for record in caplog.records if record.name != "asyncio"]


async def test_over_https_the_websocket_endpoint_is_wss(alice: Caller) -> None:
    response = await alice.http.post(
        "https://loom.test/graphql",
        json={"query": SUBSCRIPTION},
        headers={"Authorization": f"Bearer {alice.token}"},
    )
    assert "wss://loom.test/graphql" in response.json()["errors"][0]["message"]


# The same operation choice on the websocket


@pytest.fixture
async def ws_url(database: Any, settings: Any, registry: Any) -> AsyncIterator[str]:
    async with serve(create_app(settings, database=database, registry=registry)) as url:
        yield url


async def test_two_operations_without_a_name_are_refused_on_the_websocket(
    ws_url: str, alice: Caller
) -> None:
    async with connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as socket:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {alice.token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        named = SUBSCRIPTION.replace("subscription", "subscription S")
        document = f"{named} query B {{ viewer {{ name }} }}"
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": document}}
        await socket.send(json.dumps(subscribe))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
    # Strawberry sends errors of a query that cannot run as a `next` frame without data.
    assert answer["type"] == "next"
    assert answer["payload"]["data"] is None
    (error,) = answer["payload"]["errors"]
    assert error["message"] == "Must provide operation name if query contains multiple operations."


# Cursors: one Loom did not make is INVALID_CURSOR on every paged field


@pytest.mark.parametrize("cursor", ["", "garbage"])
async def test_an_empty_or_unknown_cursor_is_invalid_everywhere(
    app: Any, alice: Caller, cursor: str
) -> None:
    workflow_id = await create(alice, [node("start", "Start", "manual_trigger")], [])
    execution_id = str((await execute(alice, workflow_id))["id"])
    await app.state.services.submitter.wait(execution_id)
    for query, variables in [
        ("query($a: String) { workflows(after: $a) { totalCount } }", {}),
        ("query($a: String) { executions(after: $a) { edges { cursor } } }", {}),
        (
            "query($id: ID!, $a: ID) { execution(id: $id) { nodeRuns(after: $a) { id } } }",
            {"id": execution_id},
        ),
    ]:
        response = await alice.post(query, {**variables, "a": cursor})
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "INVALID_CURSOR", (query, error)
