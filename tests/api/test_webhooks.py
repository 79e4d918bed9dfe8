"""Webhook triggers over real HTTP (embedded mode): routes follow activation, the three
response modes, Idempotency-Key, authentication, body limits and path conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from engine.nodes.webhook import webhook_path
from server.app import create_app
from tests.api.test_credentials import create as create_credential
from tests.api.test_executions import create
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import serve
from tests.polling import until
from tests.teams import (
    MOVE,
    add_member,
    create_workspace,
)

PROBLEMS = "... on ValidationError { problems { code field nodeId message } }"
PUBLISH = f"""
mutation($id: ID!, $v: Int!) {{ publishWorkflow(id: $id, expectedVersion: $v) {{
  __typename ... on Workflow {{ version }} {PROBLEMS} }} }}
"""
ACTIVATE = f"""
mutation($id: ID!, $active: Boolean!) {{ setWorkflowActive(id: $id, active: $active) {{
  __typename ... on Workflow {{ active }} {PROBLEMS} }} }}
"""


@pytest.fixture
async def app(database, settings, registry) -> Any:
    return create_app(settings, database=database, registry=registry)


@pytest.fixture
async def http(app) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client


async def activate(caller: Caller, workflow_id: str) -> dict[str, Any]:
    published = (await caller.gql(PUBLISH, {"id": workflow_id, "v": 1}))["publishWorkflow"]
    assert published["__typename"] == "Workflow", published
    return dict(
        (await caller.gql(ACTIVATE, {"id": workflow_id, "active": True}))["setWorkflowActive"]
    )


async def hook_workflow(
    caller: Caller,
    parameters: dict[str, Any],
    after: list[dict[str, Any]] | None = None,
    **hook: Any,
) -> str:
    nodes = [node("hook", "Hook", "webhook", parameters=parameters, **hook), *(after or [])]
    edges = [edge("hook", after[0]["id"])] if after else []
    edges += [edge(a["id"], b["id"]) for a, b in zip(after or [], (after or [])[1:], strict=False)]
    workflow_id = await create(caller, nodes, edges)
    result = await activate(caller, workflow_id)
    assert result == {"__typename": "Workflow", "active": True}, result
    return workflow_id


async def refused_activation(caller: Caller, workflow_id: str) -> dict[str, Any]:
    """Try to activate a published workflow: the one problem that refuses it."""
    result = (await caller.gql(ACTIVATE, {"id": workflow_id, "active": True}))["setWorkflowActive"]
    assert result["__typename"] == "ValidationError", result
    (problem,) = result["problems"]
    return dict(problem)


async def execution_status(caller: Caller, execution_id: str) -> dict[str, Any]:
    for _ in range(200):
        data = await caller.gql(
            "query($id: ID!) { execution(id: $id) { status mode input } }", {"id": execution_id}
        )
        if data["execution"]["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return dict(data["execution"])
        await asyncio.sleep(0.05)
    raise AssertionError("execution did not finish")


async def test_immediately_answers_202_and_the_request_is_the_item(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    await hook_workflow(alice, {"path": "orders", "methods": ["POST", "PUT"]})
    response = await http.post("/webhook/orders?source=shop", json={"id": 7})
    assert response.status_code == 202, response.text
    execution = await execution_status(alice, response.json()["executionId"])
    assert execution["status"] == "SUCCEEDED"
    assert execution["mode"] == "webhook"
    item = execution["input"]
    assert (item["body"], item["query"], item["method"], item["path"]) == (
        {"id": 7},
        {"source": "shop"},
        "POST",
        "orders",
    )
    assert item["headers"]["content-type"] == "application/json"
    assert (await http.put("/webhook/orders", content=b"plain")).status_code == 202
    assert (await http.get("/webhook/orders")).status_code == 404  # not a configured method


async def test_last_node_answers_with_the_runs_result(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    total = node(
        "total",
        "Total",
        "set",
        parameters={
            "fields": [{"name": "total", "value": "{{ $json.body.price * $json.body.qty }}"}],
            "include": "only_set",
        },
    )
    await hook_workflow(alice, {"path": "price", "responseMode": "last_node"}, [total])
    response = await http.post("/webhook/price", json={"price": 4, "qty": 5})
    assert response.status_code == 200, response.text
    assert response.json() == [{"total": 20}]


@pytest.mark.parametrize("mode", ["last_node", "respond_node"])
async def test_a_failed_run_answers_500_with_its_error_and_node(
    http: httpx.AsyncClient, alice: Caller, mode: str
) -> None:
    # In respond_node mode the run fails before its Respond to Webhook node answers.
    price = node(
        "price",
        "Price",
        "set",
        parameters={"fields": [{"name": "unit", "value": "{{ $json.body.total / 0 }}"}]},
    )
    respond = node("answer", "Answer", "respond_to_webhook", parameters={"body": "ok"})
    await hook_workflow(alice, {"path": "fail", "responseMode": mode}, [price, respond])
    response = await http.post("/webhook/fail", json={"total": 10})
    assert response.status_code == 500
    answer = response.json()
    assert "'Price'" in answer["error"] and "division by zero" in answer["error"], answer
    assert (answer["errorType"], answer["nodeId"], answer["nodeName"]) == (
        "EXPRESSION_ERROR",
        "price",
        "Price",
    )
    assert answer["status"] == "FAILED"
    shown = await alice.gql(
        "query($id: ID!) { execution(id: $id) { error { type nodeId nodeName } } }",
        {"id": answer["executionId"]},
    )
    assert shown["execution"]["error"] == {
        "type": "EXPRESSION_ERROR",
        "nodeId": "price",
        "nodeName": "Price",
    }


async def test_a_run_that_succeeds_without_answering_says_so(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    # The Respond to Webhook node is on the branch the item does not take.
    gate = node(
        "gate",
        "Gate",
        "if",
        parameters={
            "conditions": [{"left": "{{ $json.body.ok }}", "operator": "equals", "right": True}]
        },
    )
    respond = node("answer", "Answer", "respond_to_webhook", parameters={"body": "ok"})
    hook = node(
        "hook", "Hook", "webhook", parameters={"path": "gated", "responseMode": "respond_node"}
    )
    workflow_id = await create(
        alice,
        [hook, gate, respond],
        [edge("hook", "gate"), edge("gate", "answer", sourceOutput="true")],
    )
    assert (await activate(alice, workflow_id))["active"] is True
    response = await http.post("/webhook/gated", json={"ok": False})
    assert response.status_code == 500
    assert "without a Respond to Webhook node answering" in response.json()["error"]
    assert response.json()["status"] == "SUCCEEDED"


async def test_respond_node_sets_status_headers_and_body(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    respond = node(
        "answer",
        "Answer",
        "respond_to_webhook",
        parameters={
            "status": 201,
            "headers": [{"name": "X-Order", "value": "{{ $json.body.id }}"}],
            "body": {"created": "{{ $json.body.id }}"},
        },
    )
    after = node("after", "After", "noop")
    await hook_workflow(alice, {"path": "create", "responseMode": "respond_node"}, [respond, after])
    response = await http.post("/webhook/create", json={"id": 42})
    assert response.status_code == 201, response.text
    assert response.headers["x-order"] == "42"
    assert response.json() == {"created": 42}


async def test_unknown_and_inactive_paths_are_404(http: httpx.AsyncClient, alice: Caller) -> None:
    workflow_id = await hook_workflow(alice, {"path": "soon-gone"})
    assert (await http.post("/webhook/nothing-here")).status_code == 404
    assert (await http.post("/webhook/soon-gone")).status_code == 202
    await alice.gql(ACTIVATE, {"id": workflow_id, "active": False})
    assert (await http.post("/webhook/soon-gone")).status_code == 404


async def test_the_default_path_is_a_uuid_of_the_node_and_the_api_shows_it(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    workflow_id = await hook_workflow(alice, {"methods": ["PUT", "POST"]})
    data = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { webhooks { nodeId path urlPath methods } } }",
        {"id": workflow_id},
    )
    (endpoint,) = data["workflow"]["webhooks"]
    path = webhook_path(workflow_id, "hook", {})
    assert len(path) == 36
    assert endpoint == {
        "nodeId": "hook",
        "path": path,
        "urlPath": f"/webhook/{path}",
        "methods": ["POST", "PUT"],
    }
    assert (await http.put(endpoint["urlPath"])).status_code == 202


async def test_a_path_in_use_is_refused_without_saying_whose(
    http: httpx.AsyncClient, alice: Caller, bob: Caller, db_state: Any
) -> None:
    await hook_workflow(bob, {"path": "shared"})
    workflow_id = await create(
        alice, [node("hook", "Hook", "webhook", parameters={"path": "shared"})], []
    )
    await alice.gql(PUBLISH, {"id": workflow_id, "v": 1})
    before = await db_state()
    problem = await refused_activation(alice, workflow_id)
    assert (problem["code"], problem["nodeId"], problem["field"]) == (
        "WEBHOOK_PATH_TAKEN",
        "hook",
        "parameters.path",
    )
    assert "bob" not in problem["message"]
    assert await db_state() == before


async def test_an_idempotency_key_answers_with_the_first_run(
    http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    await hook_workflow(alice, {"path": "once"})
    first = await http.post("/webhook/once", json={"n": 1}, headers={"Idempotency-Key": "k-1"})
    again = await http.post("/webhook/once", json={"n": 2}, headers={"Idempotency-Key": "k-1"})
    other = await http.post("/webhook/once", json={"n": 3}, headers={"Idempotency-Key": "k-2"})
    assert first.json()["executionId"] == again.json()["executionId"]
    assert other.json()["executionId"] != first.json()["executionId"]


async def executions_of(database: Any, workflow_id: str) -> int:
    async with database.engine.connect() as connection:
        found = await connection.execute(
            text("SELECT count(*) FROM executions WHERE workflow_id = :id"), {"id": workflow_id}
        )
        return int(found.scalar_one())


FIVE = node(
    "plus",
    "Plus",
    "set",
    parameters={"fields": [{"name": "n", "value": "{{ 5 }}"}], "include": "only_set"},
)


@pytest.mark.parametrize("kept", ["none", "summary"])
async def test_a_repeat_of_a_run_that_kept_no_outputs_gets_the_first_answer(
    http: httpx.AsyncClient, alice: Caller, database: Any, kept: str
) -> None:
    # Issue 17 review: the outputs were not stored, the repeat answered `[]`.
    hook = node("hook", "Hook", "webhook", parameters={"path": "rep", "responseMode": "last_node"})
    workflow_id = await create(
        alice, [hook, FIVE], [edge("hook", "plus")], settings={"saveDataOnSuccess": kept}
    )
    assert (await activate(alice, workflow_id))["active"]
    key = {"Idempotency-Key": "k1"}
    first = await http.post("/webhook/rep", json={}, headers=key)
    again = await http.post("/webhook/rep", json={"other": 1}, headers=key)
    assert (first.status_code, first.json()) == (200, [{"n": 5}])
    assert (again.status_code, again.json()) == (200, [{"n": 5}])
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await executions_of(database, workflow_id) == 1


@pytest.mark.parametrize("kept", ["none", "summary"])
async def test_a_repeat_of_a_respond_node_run_that_kept_no_outputs_gets_its_status_and_headers(
    http: httpx.AsyncClient, alice: Caller, database: Any, kept: str
) -> None:
    # Issue 17 review: the repeat answered `200 null`, the status and headers lost.
    respond = node(
        "answer",
        "Answer",
        "respond_to_webhook",
        parameters={"status": 201, "headers": [{"name": "X-Order", "value": "7"}], "body": "ok"},
    )
    hook = node(
        "hook", "Hook", "webhook", parameters={"path": "rep2", "responseMode": "respond_node"}
    )
    workflow_id = await create(
        alice, [hook, respond], [edge("hook", "answer")], settings={"saveDataOnSuccess": kept}
    )
    assert (await activate(alice, workflow_id))["active"]
    key = {"Idempotency-Key": "k2"}
    first = await http.post("/webhook/rep2", json={}, headers=key)
    again = await http.post("/webhook/rep2", json={}, headers=key)
    assert (first.status_code, first.text, first.headers["x-order"]) == (201, "ok", "7")
    assert (again.status_code, again.text, again.headers["x-order"]) == (201, "ok", "7")
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await executions_of(database, workflow_id) == 1


@pytest.mark.parametrize("mode", ["last_node", "respond_node"])
async def test_a_repeat_while_a_run_that_keeps_no_outputs_goes_on_gets_the_first_answer(
    http: httpx.AsyncClient, alice: Caller, database: Any, mode: str
) -> None:
    # The repeat waits for the run; its end in the database holds no answer (the run kept
    # none): the repeat takes the one the first request got, once that was sent.
    wait = node("wait", "Wait", "wait", parameters={"amount": 0.3, "unit": "seconds"})
    respond = node(
        "answer",
        "Answer",
        "respond_to_webhook",
        parameters={"status": 201, "headers": [{"name": "X-Order", "value": "7"}], "body": "ok"},
    )
    last = FIVE if mode == "last_node" else respond
    hook = node("hook", "Hook", "webhook", parameters={"path": "slow", "responseMode": mode})
    workflow_id = await create(
        alice,
        [hook, wait, last],
        [edge("hook", "wait"), edge("wait", last["id"])],
        settings={"saveDataOnSuccess": "none"},
    )
    assert (await activate(alice, workflow_id))["active"]
    key = {"Idempotency-Key": "k5"}
    first_task = asyncio.create_task(http.post("/webhook/slow", json={}, headers=key))

    async def started() -> bool:
        return await executions_of(database, workflow_id) == 1

    await until(started, what="the first run started")
    again = await http.post("/webhook/slow", json={}, headers=key)
    first = await first_task
    assert first.status_code in (200, 201), first.text
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers.get("x-order") == first.headers.get("x-order")
    assert await executions_of(database, workflow_id) == 1


async def test_a_keyed_request_that_timed_out_leaves_the_answer_for_its_repeat(
    database: Any, settings: Any, registry: Any, alice: Caller
) -> None:
    # The first request gets 504; its run, which keeps no outputs, ends later and only this
    # process's handover holds its answer: it is kept for the key's repeats.
    app = create_app(
        settings.model_copy(update={"webhook_timeout_s": 0.2}), database=database, registry=registry
    )
    wait = node("wait", "Wait", "wait", parameters={"amount": 1, "unit": "seconds"})
    hook = node("hook", "Hook", "webhook", parameters={"path": "late", "responseMode": "last_node"})
    workflow_id = await create(
        alice,
        [hook, wait, FIVE],
        [edge("hook", "wait"), edge("wait", "plus")],
        settings={"saveDataOnSuccess": "none"},
    )
    assert (await activate(alice, workflow_id))["active"]
    key = {"Idempotency-Key": "k6"}
    async with serve(app) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            first = await client.post("/webhook/late", json={}, headers=key)
            assert first.status_code == 504, first.text

            async def answered() -> httpx.Response | None:
                again = await client.post("/webhook/late", json={}, headers=key)
                return None if again.status_code == 504 else again

            again = await until(answered, what="the repeat answered")
    assert (again.status_code, again.json()) == (200, [{"n": 5}])
    assert await executions_of(database, workflow_id) == 1


async def test_deleting_the_workflow_deletes_its_idempotency_keys(
    http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    async def keys() -> int:
        async with database.engine.connect() as connection:
            found = await connection.execute(text("SELECT count(*) FROM webhook_idempotency_keys"))
            return int(found.scalar_one())

    kept = await hook_workflow(alice, {"path": "kept"})
    gone = await hook_workflow(alice, {"path": "gone"})
    for path in ("kept", "gone"):
        response = await http.post(f"/webhook/{path}", json={}, headers={"Idempotency-Key": "k"})
        assert response.status_code == 202, response.text
    assert await keys() == 2
    deactivated = await alice.gql(ACTIVATE, {"id": gone, "active": False})
    assert deactivated["setWorkflowActive"]["__typename"] == "Workflow"
    deleted = await alice.gql(
        "mutation($id: ID!) { deleteWorkflow(id: $id) { __typename } }", {"id": gone}
    )
    assert deleted["deleteWorkflow"]["__typename"] == "Deleted", deleted
    assert await keys() == 1
    assert kept


async def test_a_failed_runs_answer_is_repeated_as_it_was_sent(
    http: httpx.AsyncClient, alice: Caller, database: Any
) -> None:
    failing = node(
        "boom", "Boom", "set", parameters={"fields": [{"name": "n", "value": "{{ 1 / 0 }}"}]}
    )
    hook = node(
        "hook", "Hook", "webhook", parameters={"path": "fails", "responseMode": "last_node"}
    )
    workflow_id = await create(
        alice, [hook, failing], [edge("hook", "boom")], settings={"saveDataOnError": "none"}
    )
    assert (await activate(alice, workflow_id))["active"]
    key = {"Idempotency-Key": "k3"}
    first = await http.post("/webhook/fails", json={}, headers=key)
    again = await http.post("/webhook/fails", json={}, headers=key)
    assert first.status_code == 500, first.text
    assert (again.status_code, again.json()) == (500, first.json())
    assert await executions_of(database, workflow_id) == 1


async def test_an_answer_over_the_kept_size_is_remembered_as_too_large(
    http: httpx.AsyncClient, alice: Caller, database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage import idempotency

    monkeypatch.setattr(idempotency, "MAX_STORED_ANSWER_BYTES", 5)
    hook = node("hook", "Hook", "webhook", parameters={"path": "big", "responseMode": "last_node"})
    workflow_id = await create(
        alice, [hook, FIVE], [edge("hook", "plus")], settings={"saveDataOnSuccess": "none"}
    )
    assert (await activate(alice, workflow_id))["active"]
    key = {"Idempotency-Key": "k4"}
    first = await http.post("/webhook/big", json={}, headers=key)
    again = await http.post("/webhook/big", json={}, headers=key)
    assert (first.status_code, first.json()) == (200, [{"n": 5}])
    assert again.status_code == 500
    assert again.json()["error"] == (
        "the answer to the first request for this Idempotency-Key was larger than 5 bytes "
        "and was not kept"
    )
    assert await executions_of(database, workflow_id) == 1


async def test_bodies_over_the_limit_get_413(http: httpx.AsyncClient, alice: Caller) -> None:
    await hook_workflow(alice, {"path": "small", "maxBodyBytes": 10})
    assert (await http.post("/webhook/small", content=b"x" * 11)).status_code == 413
    assert (await http.post("/webhook/small", content=b"x" * 10)).status_code == 202


async def test_header_and_basic_authentication(http: httpx.AsyncClient, alice: Caller) -> None:
    header = await create_credential(
        alice,
        name="hook key",
        kind="api_key_header",
        data={"headerName": "X-Hook-Key", "apiKey": "k3y"},
    )
    await hook_workflow(alice, {"path": "guarded"}, credentials={"api_key_header": header["id"]})
    assert (await http.post("/webhook/guarded")).status_code == 401
    assert (await http.post("/webhook/guarded", headers={"X-Hook-Key": "nope"})).status_code == 401
    assert (await http.post("/webhook/guarded", headers={"X-Hook-Key": "k3y"})).status_code == 202
    basic = await create_credential(
        alice, name="hook basic", kind="basic_auth", data={"username": "u", "password": "p4ss"}
    )
    await hook_workflow(alice, {"path": "basic"}, credentials={"basic_auth": basic["id"]})
    refused = await http.post("/webhook/basic", auth=("u", "wrong"))
    assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
    assert (await http.post("/webhook/basic", auth=("u", "p4ss"))).status_code == 202


async def test_route_changes_take_effect_at_once_though_routes_are_cached(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    workflow_id = await hook_workflow(alice, {"path": "changing"})
    assert (await http.post("/webhook/changing")).status_code == 202  # now cached
    # A new published version answers with the run's result instead.
    changed = await alice.gql(
        """mutation($id: ID!, $input: WorkflowInput!) {
             updateWorkflow(id: $id, input: $input, expectedVersion: 1) { __typename } }""",
        {
            "id": workflow_id,
            "input": {
                "name": "changing",
                "nodes": [
                    node(
                        "hook",
                        "Hook",
                        "webhook",
                        parameters={"path": "changing", "responseMode": "last_node"},
                    )
                ],
                "edges": [],
            },
        },
    )
    assert changed["updateWorkflow"]["__typename"] == "Workflow", changed
    published = (await alice.gql(PUBLISH, {"id": workflow_id, "v": 2}))["publishWorkflow"]
    assert published["__typename"] == "Workflow", published
    answer = await http.post("/webhook/changing", json={"n": 1})
    assert answer.status_code == 200, answer.text
    assert answer.json()[0]["body"] == {"n": 1}
    deleted = await alice.gql(
        "mutation($id: ID!) { deleteWorkflow(id: $id) { __typename } }", {"id": workflow_id}
    )
    assert deleted["deleteWorkflow"]["__typename"] == "Deleted", deleted
    assert (await http.post("/webhook/changing")).status_code == 404


def test_a_route_looked_up_before_a_change_is_not_cached() -> None:
    from storage.webhooks import Route, RouteCache

    route = Route("w", "ws", {}, "v", 1, "hook", {}, {}, frozenset())
    cache = RouteCache(ttl_s=60)
    generation = cache.generation
    cache.clear()  # routes changed while the lookup ran
    cache.put("POST", "p", route, generation)
    assert cache.get("POST", "p") is None
    cache.put("POST", "p", route, cache.generation)
    assert cache.get("POST", "p") is route
    assert RouteCache(ttl_s=0).get("POST", "p") is None
    expired = RouteCache(ttl_s=1e-9)
    expired.put("POST", "p", route, expired.generation)
    assert expired.get("POST", "p") is None


async def test_a_webhook_run_of_a_version_that_pins_items_ignores_them(
    http: httpx.AsyncClient, alice: Caller
) -> None:
    total = node(
        "total",
        "Total",
        "set",
        parameters={"fields": [{"name": "total", "value": "{{ $json.body.qty * 2 }}"}]},
    )
    hook = node(
        "hook", "Hook", "webhook", parameters={"path": "pinned", "responseMode": "last_node"}
    )
    workflow_id = await create(alice, [hook, total], [edge("hook", "total")])
    pinned = await alice.gql(
        """mutation($wf: ID!) { pinNodeData(workflowId: $wf, nodeId: "total",
             items: [{total: "pinned"}], expectedVersion: 1) { __typename } }""",
        {"wf": workflow_id},
    )
    assert pinned["pinNodeData"]["__typename"] == "Workflow", pinned
    published = (await alice.gql(PUBLISH, {"id": workflow_id, "v": 2}))["publishWorkflow"]
    assert published["__typename"] == "Workflow", published
    activated = await alice.gql(ACTIVATE, {"id": workflow_id, "active": True})
    assert activated["setWorkflowActive"] == {"__typename": "Workflow", "active": True}
    response = await http.post("/webhook/pinned", json={"qty": 4})
    assert response.status_code == 200, response.text
    # The Set node ran on the request: the pinned items were not used.
    ((item,),) = [response.json()]
    assert (item["body"], item["total"]) == ({"qty": 4}, 8)


async def test_a_moved_active_workflow_keeps_its_webhook_and_runs_in_its_new_workspace(
    http: httpx.AsyncClient, alice: Caller, bob: Caller
) -> None:
    workflow_id = await hook_workflow(alice, {"path": "moving", "methods": ["POST"]})
    assert (await http.post("/webhook/moving", json={})).status_code == 202  # route cached
    team = await create_workspace(alice, "B")
    await add_member(alice, team, bob, "viewer")
    moved = (await alice.gql(MOVE, {"id": workflow_id, "ws": team}))["moveWorkflow"]
    assert moved["__typename"] == "Workflow" and moved["workspace"]["id"] == team, moved
    response = await http.post("/webhook/moving", json={"n": 1})
    assert response.status_code == 202, response.text
    execution = await execution_status(bob, response.json()["executionId"])  # B's member
    assert execution["status"] == "SUCCEEDED" and execution["input"]["body"] == {"n": 1}
    active = await bob.gql("query($id: ID!) { workflow(id: $id) { active } }", {"id": workflow_id})
    assert active["workflow"] == {"active": True}
