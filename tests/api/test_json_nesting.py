"""The JSON nesting limit (64 levels, engine/json_depth.py) everywhere JSON comes in over the
API: GraphQL JSON arguments, GraphQL request bodies (HTTP and websocket), webhook bodies,
HTTP Request responses and node outputs. Past it: a typed error, never a 500, nothing stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlmodel import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.app import create_app
from storage.models import NodeRun, NodeRunPayload
from tests.api.test_credentials import CREATE_CREDENTIAL, UPDATE_CREDENTIAL
from tests.api.test_credentials import create as create_credential
from tests.api.test_executions import EXECUTE, GET_EXECUTION, create, execute, finished
from tests.api.test_http_node import close_http
from tests.api.test_webhooks import activate
from tests.conftest import Caller
from tests.factories import ADD_NODE, CREATE, UPDATE, edge, nested, nested_text, node, only
from tests.live import serve

LIMIT = 64
# Asked for, request errors are 400 whatever the GraphQL-over-HTTP rules for plain JSON say.
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture
async def app(database: Any, settings: Any, registry: Any) -> AsyncIterator[Any]:
    allowed = settings.model_copy(update={"http_allowed_networks": ["127.0.0.1/32"]})
    app = create_app(allowed, database=database, registry=registry)
    yield app
    await close_http(app)


@pytest.fixture(autouse=True)
def nothing_unexpected(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test here may log an unexpected error (a masked 500, a crash in a node)."""
    yield
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not errors, [record.getMessage() for record in errors]


async def graphql(
    caller: Caller, query: str, variables: Any = None, *, variables_text: str | None = None
) -> httpx.Response:
    """POST an operation; `variables_text` is sent as it is (JSON deeper than the client's
    encoder reaches)."""
    text = variables_text if variables_text is not None else json.dumps(variables or {})
    return await caller.http.post(
        "/graphql",
        content='{"query": ' + json.dumps(query) + ', "variables": ' + text + "}",
        headers={
            "Authorization": f"Bearer {caller.token}",
            "Content-Type": "application/json",
            "Accept": GRAPHQL_RESPONSE,
        },
    )


def too_deep(response: httpx.Response, *, while_executing: bool = False) -> str:
    """The one error of a request refused for nesting: BAD_USER_INPUT, the limit; HTTP 400
    when refused before execution. Refused while executing (a variable inside a literal is
    replaced only then), it is a field error: 200 by the GraphQL-over-HTTP rules."""
    assert response.status_code in ((200, 400) if while_executing else (400,)), response.text
    body = response.json()
    assert body.get("data") is None, body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "maxDepth": LIMIT}, error
    assert f"nested more than {LIMIT} levels deep" in error["message"], error
    return str(error["message"])


async def trigger_only(caller: Caller) -> str:
    return await create(caller, [node("start", "Start", "manual_trigger")], [])


# GraphQL JSON arguments


async def test_execute_input_at_the_limit_runs_and_one_level_more_is_refused(
    app: Any, alice: Caller, db_state: Any
) -> None:
    workflow_id = await trigger_only(alice)
    before = await db_state()
    over = {"id": workflow_id, "input": {"x": nested(LIMIT)}}
    assert "$input" in too_deep(await graphql(alice, EXECUTE, over))
    assert await db_state() == before  # no execution
    at_limit = {"x": nested(LIMIT - 1)}
    started = await execute(alice, workflow_id, input=at_limit)
    assert started["__typename"] == "Execution", started
    execution = await finished(app, alice, started["id"])
    assert (execution["status"], execution["input"]) == ("SUCCEEDED", at_limit)


@pytest.mark.parametrize("depth", [254, 300, 900])
async def test_execute_input_nested_as_in_the_report_is_refused(
    alice: Caller, db_state: Any, depth: int
) -> None:
    # Issue 12: 300 levels answered INTERNAL_SERVER_ERROR (orjson's recursion limit).
    workflow_id = await trigger_only(alice)
    before = await db_state()
    variables = f'{{"id": "{workflow_id}", "input": {{"x": {nested_text(depth)}}}}}'
    too_deep(await graphql(alice, EXECUTE, variables_text=variables))
    assert await db_state() == before


async def test_a_json_literal_in_the_document_is_checked_and_named(
    alice: Caller, db_state: Any
) -> None:
    workflow_id = await trigger_only(alice)
    literal = "mutation($id: ID!) { executeWorkflow(id: $id, input: {x: %s}) { __typename } }"
    before = await db_state()
    message = too_deep(await graphql(alice, literal % nested_text(LIMIT), {"id": workflow_id}))
    assert "'input' (argument of 'executeWorkflow')" in message
    # Within the limit as written, past it with the variable it holds.
    with_variable = """mutation($id: ID!, $v: JSON) {
      executeWorkflow(id: $id, input: {x: [[$v]]}) { __typename } }"""
    variables = {"id": workflow_id, "v": nested(LIMIT - 2)}
    response = await graphql(alice, with_variable, variables)
    assert "Argument 'input'" in too_deep(response, while_executing=True)
    create_literal = (
        'mutation { createWorkflow(input: {name: "x", edges: [], nodes: [{id: "a", name: "a",'
        ' type: "noop"}, {id: "b", name: "b", type: "noop", parameters: {a: %s}}]})'
        " { __typename } }"
    )
    message = too_deep(await graphql(alice, create_literal % nested_text(LIMIT)))
    assert message.startswith(
        "The value of 'input.nodes[1].parameters' (argument of 'createWorkflow') is JSON nested"
    ), message
    default = (
        "mutation($id: ID!, $v: JSON = {x: %s}) {"
        " executeWorkflow(id: $id, input: $v) { __typename } }"
    )
    message = too_deep(await graphql(alice, default % nested_text(LIMIT), {"id": workflow_id}))
    assert message.startswith("The default value of '$v' is JSON nested"), message
    assert await db_state() == before
    accepted = await graphql(alice, literal % nested_text(LIMIT - 1), {"id": workflow_id})
    assert accepted.json()["data"]["executeWorkflow"]["__typename"] == "Execution"


def _workflow(parameters: Any = None, settings: Any = None) -> dict[str, Any]:
    start = node("start", "Start", "manual_trigger", parameters=parameters or {})
    return {"name": "Deep", "nodes": [start], "edges": [], "settings": settings or {}}


async def test_every_json_field_of_workflows_and_credentials_is_checked(
    alice: Caller, db_state: Any
) -> None:
    workflow = only(await alice.gql(CREATE, {"input": _workflow()}))
    credential = await create_credential(
        alice, name="Token", kind="bearer_token", data={"token": "t"}
    )
    deep = nested(LIMIT)
    refused = [
        (CREATE, {"input": _workflow(parameters={"a": deep})}, ".nodes[0].parameters"),
        (CREATE, {"input": _workflow(settings={"a": deep})}, ".settings"),
        (
            UPDATE,
            {"id": workflow["id"], "v": 1, "input": _workflow(parameters={"a": deep})},
            ".nodes[0].parameters",
        ),
        (
            ADD_NODE,
            {"wf": workflow["id"], "v": 1, "node": node("n", parameters={"a": deep})},
            ".parameters",
        ),
        (
            CREATE_CREDENTIAL,
            {"input": {"name": "Deep", "kind": "bearer_token", "data": {"token": deep}}},
            ".data",
        ),
        (
            UPDATE_CREDENTIAL,
            {"id": credential["id"], "input": {"data": {"token": deep}}},
            ".data",
        ),
    ]
    before = await db_state()
    for operation, variables, field in refused:
        assert field in too_deep(await graphql(alice, operation, variables)), field
    assert await db_state() == before  # no workflow, version, node or credential changed


async def test_parameters_and_settings_at_the_limit_are_saved(alice: Caller) -> None:
    at_limit = nested(LIMIT - 1)
    saved = only(await alice.gql(CREATE, {"input": _workflow(parameters={"a": at_limit})}))
    assert saved["__typename"] == "Workflow", saved
    assert saved["nodes"][0]["parameters"] == {"a": at_limit}


async def test_a_cursor_that_nests_is_an_invalid_cursor(alice: Caller) -> None:
    cursor = base64.urlsafe_b64encode(nested_text(5000).encode()).decode()
    response = await graphql(
        alice, "query($a: String) { workflows(after: $a) { totalCount } }", {"a": cursor}
    )
    assert response.status_code in (200, 400), response.text  # a field error: see too_deep
    assert response.json()["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


# The GraphQL request body itself


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
async def test_request_bodies_nested_at_any_depth_are_400(
    alice: Caller, db_state: Any, depth: int
) -> None:
    workflow_id = await trigger_only(alice)
    before = await db_state()
    bodies = [
        nested_text(depth),
        '{"query": "{ viewer { id } }", "extensions": {"a": ' + nested_text(depth) + "}}",
        '{"query": ' + json.dumps(EXECUTE) + ', "variables": '
        f'{{"id": "{workflow_id}", "input": {{"x": {nested_text(depth)}}}}}}}',
    ]
    for body in bodies:
        response = await alice.http.post(
            "/graphql",
            content=body,
            headers={"Authorization": f"Bearer {alice.token}", "Accept": GRAPHQL_RESPONSE},
        )
        assert response.status_code == 400, response.text
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] in ("BAD_REQUEST", "BAD_USER_INPUT"), error
    assert await db_state() == before


async def test_the_websocket_refuses_nested_messages_and_arguments(
    app: Any, alice: Caller, db_state: Any
) -> None:
    workflow_id = await trigger_only(alice)
    before = await db_state()
    protocol = "graphql-transport-ws"
    init = json.dumps(
        {"type": "connection_init", "payload": {"Authorization": f"Bearer {alice.token}"}}
    )
    async with (
        serve(app) as url,
        connect(url, subprotocols=[protocol], open_timeout=10) as socket,
    ):
        await socket.send(init)
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
        variables = {"id": workflow_id, "input": {"x": nested(LIMIT)}}
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": EXECUTE, "variables": variables},
        }
        await socket.send(json.dumps(subscribe))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert answer["type"] == "next", answer
        (error,) = answer["payload"]["errors"]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "maxDepth": LIMIT}, error
        done = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert done == {"id": "1", "type": "complete"}
        # A message deeper than the parser reads closes the connection as malformed.
        await socket.send(
            '{"id": "2", "type": "subscribe", "payload": ' + nested_text(100_000) + "}"
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert await db_state() == before


# Webhook bodies


async def _hook(caller: Caller) -> None:
    trigger = node("hook", "Hook", "webhook", parameters={"path": "deep", "methods": ["POST"]})
    workflow_id = await create(caller, [trigger], [])
    assert (await activate(caller, workflow_id))["active"] is True


async def _webhook(caller: Caller, body: str, content_type: str) -> httpx.Response:
    return await caller.http.post(
        "/webhook/deep", content=body, headers={"Content-Type": content_type}
    )


@pytest.mark.parametrize("depth", [LIMIT + 1, 254, 100_000])
@pytest.mark.parametrize("content_type", ["application/json", "application/ld+json"])
async def test_a_webhook_body_past_the_limit_is_400_and_starts_nothing(
    alice: Caller, db_state: Any, depth: int, content_type: str
) -> None:
    # Issue 12: 254 levels (508 bytes) answered 500 (RecursionError in the payload encoder).
    await _hook(alice)
    before = await db_state()
    response = await _webhook(alice, nested_text(depth), content_type)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": f"the JSON body is nested more than {LIMIT} levels deep (the limit)",
        "code": "JSON_TOO_DEEP",
        "maxDepth": LIMIT,
    }
    assert await db_state() == before


async def test_a_webhook_body_at_the_limit_runs(app: Any, alice: Caller) -> None:
    await _hook(alice)
    response = await _webhook(alice, nested_text(LIMIT), "application/json")
    assert response.status_code == 202, response.text
    execution = await finished(app, alice, response.json()["executionId"])
    assert execution["status"] == "SUCCEEDED", execution
    assert execution["input"]["body"] == json.loads(nested_text(LIMIT))


async def test_webhook_forms_never_nest_and_odd_json_is_no_500(app: Any, alice: Caller) -> None:
    await _hook(alice)
    form = await _webhook(alice, "a" + "[b]" * 100 + "=1", "application/x-www-form-urlencoded")
    assert form.status_code == 202, form.text
    execution = await finished(app, alice, form.json()["executionId"])
    assert execution["input"]["body"] == {"a" + "[b]" * 100: "1"}
    # JSON the store cannot encode as parsed (a lone surrogate, an integer past 64 bits)
    # answered 500 too: it is read as orjson reads it, or kept as text.
    for body in ('{"a": "\\ud800"}', "123456789012345678901234567890"):
        response = await _webhook(alice, body, "application/json")
        assert response.status_code == 202, response.text
        execution = await finished(app, alice, response.json()["executionId"])
        assert execution["status"] == "SUCCEEDED", execution


# HTTP Request responses and node outputs


@pytest.fixture
async def deep_api() -> AsyncIterator[str]:
    """A local API whose `/deep/{n}` answers JSON arrays nested n levels deep."""

    async def deep(request: web.Request) -> web.Response:
        body = nested_text(int(request.match_info["depth"]))
        return web.Response(text=body, content_type="application/json")

    api = web.Application()
    api.router.add_get("/deep/{depth}", deep)
    runner = web.AppRunner(api)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _run(
    app: Any, caller: Caller, second: dict[str, Any], **variables: Any
) -> dict[str, Any]:
    workflow_id = await create(
        caller, [node("start", "Start", "manual_trigger"), second], [edge("start", second["id"])]
    )
    started = await execute(caller, workflow_id, **variables)
    assert started["__typename"] == "Execution", started
    return await finished(app, caller, started["id"])


async def _stored_outputs(database: Any, execution_id: str) -> list[str]:
    """The node ids whose output is stored for the execution."""
    async with database.session() as session:
        rows = await session.exec(
            select(NodeRun.node_id)
            .join(NodeRunPayload, NodeRunPayload.node_run_id == NodeRun.id)  # type: ignore[arg-type]
            .where(NodeRun.execution_id == execution_id)
        )
        return sorted(rows.all())


def _node_run(execution: dict[str, Any], node_id: str) -> dict[str, Any]:
    (run,) = [run for run in execution["nodeRuns"] if run["nodeId"] == node_id]
    return run


@pytest.mark.parametrize("depth", [LIMIT + 1, 300, 100_000])
async def test_an_http_response_past_the_limit_fails_its_node(
    app: Any, alice: Caller, database: Any, deep_api: str, depth: int
) -> None:
    call = node("call", "Call", "http_request", parameters={"url": f"{deep_api}/deep/{depth}"})
    execution = await _run(app, alice, call)
    assert execution["status"] == "FAILED", execution
    error = _node_run(execution, "call")["error"]
    assert error["type"] == "HTTP_RESPONSE_TOO_DEEP", error
    assert f"nested more than {LIMIT} levels deep" in error["message"]
    assert error["details"] == {"maxDepth": LIMIT}
    assert await _stored_outputs(database, execution["id"]) == ["start"]


async def test_an_http_response_at_the_limit_is_the_items_body(
    app: Any, alice: Caller, deep_api: str
) -> None:
    call = node("call", "Call", "http_request", parameters={"url": f"{deep_api}/deep/{LIMIT}"})
    execution = await _run(app, alice, call)
    assert execution["status"] == "SUCCEEDED", execution
    assert _node_run(execution, "call")["output"] == [{"body": json.loads(nested_text(LIMIT))}]


def _wrap(levels: int) -> dict[str, Any]:
    """A Set node whose expression puts `$json.x` inside `levels` more arrays."""
    expression = "{{ " + "[" * levels + "$json.x" + "]" * levels + " }}"
    return node("set", "Wrap", "set", parameters={"fields": [{"name": "y", "value": expression}]})


async def test_a_node_output_past_the_limit_is_a_node_error_and_not_stored(
    app: Any, alice: Caller, database: Any
) -> None:
    # Each input field nests 62 levels; the expression adds three: 65 in field `y`.
    execution = await _run(app, alice, _wrap(3), input={"x": nested(LIMIT - 2)})
    assert execution["status"] == "FAILED", execution
    error = _node_run(execution, "set")["error"]
    assert error["type"] == "NODE_OUTPUT_TOO_DEEP", error
    assert error["message"] == (
        f"node 'Wrap': output 'main' item 0 holds JSON nested more than {LIMIT} levels deep "
        "(the limit)"
    )
    assert error["details"] == {"port": "main", "item": 0, "maxDepth": LIMIT}
    assert await _stored_outputs(database, execution["id"]) == ["start"]


async def test_a_node_output_at_the_limit_is_stored(app: Any, alice: Caller) -> None:
    execution = await _run(app, alice, _wrap(2), input={"x": nested(LIMIT - 2)})
    assert execution["status"] == "SUCCEEDED", execution
    (item,) = _node_run(execution, "set")["output"]
    assert item["y"] == [[nested(LIMIT - 2)]]
    again = await alice.gql(GET_EXECUTION, {"id": execution["id"]})
    assert again["execution"]["output"] == [item]
