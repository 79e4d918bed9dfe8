"""What ended executions keep (issue 17, "What is kept"): `all`, `summary` (row, node runs
and events without inputs, outputs or previews) or `none` (kept like `summary`, then deleted
by the pruner a grace period after the end), per workflow setting with server-wide defaults;
callers that read a run's outcome back still get it, and so do a cancel and a webhook's
repeat; a retry of a run that kept no data is refused; bad values name the setting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import SQLModel

from server.settings import Settings
from storage.db import Database
from storage.retention import RetentionPolicy, prune
from storage.types import utcnow
from tests.api.test_executions import create, execute
from tests.api.test_subworkflows import CALLER_EDGES, DOUBLER_EDGES, DOUBLER_NODES, caller_nodes
from tests.api.test_subworkflows import run as run_to_end
from tests.api.test_webhooks import hook_workflow, http  # noqa: F401 (a fixture: a live server)
from tests.conftest import Caller
from tests.factories import CREATE, edge, node
from tests.polling import until

RETRY = """
mutation($id: ID!) { retryExecution(id: $id) {
  __typename ... on Execution { id }
  ... on ValidationError { problems { code field message } } } }
"""
GET = """
query($id: ID!) { execution(id: $id) { id status input output
  nodeRuns { nodeId status durationMs outputItems output } } }
"""
_EXECUTIONS = SQLModel.metadata.tables["executions"]
TABLES = ("executions", "node_runs", "node_run_payloads", "execution_payloads", "execution_events")

NODES = [
    node("start", "Start", "manual_trigger"),
    node(
        "set",
        "Set",
        "set",
        parameters={"fields": [{"name": "n", "value": "{{ $json.n + 1 }}"}]},
    ),
]
EDGES = [edge("start", "set")]


async def counts(database: Database) -> dict[str, int]:
    tables = SQLModel.metadata.tables
    async with database.engine.connect() as connection:
        return {
            name: (
                await connection.execute(select(func.count()).select_from(tables[name]))
            ).scalar_one()
            for name in TABLES
        }


async def manual_run(
    app: Any, caller: Caller, settings: dict[str, Any], nodes: list[dict[str, Any]] = NODES
) -> str:
    workflow_id = await create(caller, nodes, EDGES, settings=settings)
    started = await execute(caller, workflow_id, input={"n": 1})
    assert started["__typename"] == "Execution", started
    await app.state.services.submitter.wait(started["id"])
    return str(started["id"])


async def test_all_keeps_everything(app: Any, alice: Caller, database: Database) -> None:
    execution_id = await manual_run(app, alice, {"saveManualExecutions": "all"})
    shown = (await alice.gql(GET, {"id": execution_id}))["execution"]
    assert shown["output"] == [{"n": 2}]
    assert (await counts(database))["node_run_payloads"] == 2


async def test_summary_keeps_statuses_and_timings_without_data(
    app: Any, alice: Caller, database: Database
) -> None:
    execution_id = await manual_run(app, alice, {"saveManualExecutions": "summary"})
    shown = (await alice.gql(GET, {"id": execution_id}))["execution"]
    assert shown["status"] == "SUCCEEDED"
    assert shown["output"] is None and shown["input"] is None
    assert [(run["nodeId"], run["status"], run["outputItems"]) for run in shown["nodeRuns"]] == [
        ("start", "SUCCEEDED", 1),
        ("set", "SUCCEEDED", 1),
    ]
    assert all(run["durationMs"] is not None and run["output"] is None for run in shown["nodeRuns"])
    found = await counts(database)
    assert (found["node_run_payloads"], found["execution_payloads"]) == (0, 0)
    assert (found["executions"], found["node_runs"]) == (1, 2)
    async with database.engine.connect() as connection:
        previews = SQLModel.metadata.tables["execution_events"].c.preview
        kept = (await connection.execute(select(previews))).scalars().all()
    assert kept and all(preview is None for preview in kept)


async def test_none_is_deleted_a_grace_period_after_it_ends(
    app: Any, alice: Caller, database: Database
) -> None:
    execution_id = await manual_run(app, alice, {"saveManualExecutions": "none"})
    shown = (await alice.gql(GET, {"id": execution_id}))["execution"]
    assert (shown["status"], shown["output"]) == ("SUCCEEDED", None)
    found = await counts(database)
    assert (found["executions"], found["node_run_payloads"], found["execution_payloads"]) == (
        1,
        0,
        0,
    )
    policy = RetentionPolicy(none_after_s=60)
    within = await prune(database, policy, only_discarded=True)
    assert within is not None and within.executions_deleted == 0
    later = utcnow() + timedelta(seconds=61)
    after = await prune(database, policy, only_discarded=True, now=later)
    assert after is not None and after.executions_deleted == 1
    assert await counts(database) == dict.fromkeys(TABLES, 0)


async def test_cancel_of_a_run_that_keeps_nothing(app: Any, alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("wait", "Wait", "wait", parameters={"amount": 30, "unit": "seconds"}),
        ],
        [edge("start", "wait")],
        settings={"saveManualExecutions": "none", "saveDataOnError": "none"},
    )
    started = await execute(alice, workflow_id)

    async def waiting() -> bool:
        shown = (await alice.gql(GET, {"id": started["id"]}))["execution"]
        return any(run["status"] == "RUNNING" for run in shown["nodeRuns"])

    await until(waiting, what="the wait node running")
    data = await alice.gql(
        "mutation($id: ID!) { cancelExecution(id: $id) {"
        " __typename ... on Execution { status } } }",
        {"id": started["id"]},
    )
    assert "errors" not in data, data
    assert data["cancelExecution"] == {"__typename": "Execution", "status": "CANCELLED"}


async def test_a_retry_of_a_run_that_kept_no_data_is_refused(
    app: Any, alice: Caller, database: Database
) -> None:
    execution_id = await manual_run(app, alice, {"saveManualExecutions": "summary"})
    before = await counts(database)
    result = (await alice.gql(RETRY, {"id": execution_id}))["retryExecution"]
    assert result["__typename"] == "ValidationError", result
    assert [(p["code"], p["field"]) for p in result["problems"]] == [
        ("EXECUTION_DATA_NOT_KEPT", "id")
    ]
    assert await counts(database) == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("saveDataOnSuccess", "some"),
        ("saveDataOnError", 1),
        ("saveManualExecutions", None),
        ("executionsMaxAgeHours", 0),
        ("executionsMaxCount", -5),
        ("failedExecutionsMaxAgeHours", "long"),
    ],
)
async def test_a_bad_value_is_refused_naming_the_setting(
    alice: Caller, db_state: Any, name: str, value: Any
) -> None:
    before = await db_state()
    data = await alice.gql(
        CREATE,
        {"input": {"name": "W", "nodes": NODES, "edges": EDGES, "settings": {name: value}}},
    )
    result = data["createWorkflow"]
    assert result["__typename"] == "ValidationError", result
    assert [(p["code"], p["field"]) for p in result["problems"]] == [
        ("INVALID_SETTINGS", f"settings.{name}")
    ]
    assert await db_state() == before


@pytest.fixture
def settings() -> Settings:
    # Server-wide: successful production runs keep nothing, failed ones a summary.
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        token_cache_s=0.0,
        secret_key="test-secret-key-for-credentials",
        save_data_on_success="none",
        save_data_on_error="summary",
    )


async def test_server_defaults_apply_to_production_runs(
    http: httpx.AsyncClient,  # noqa: F811 (fixture)
    alice: Caller,
    database: Database,
) -> None:
    failing = node(
        "boom", "Boom", "set", parameters={"fields": [{"name": "x", "value": "{{ 1 / 0 }}"}]}
    )
    await hook_workflow(alice, {"path": "fails"}, [failing])
    await hook_workflow(alice, {"path": "works"})
    assert (await http.post("/webhook/works", json={})).status_code == 202
    assert (await http.post("/webhook/fails", json={})).status_code == 202

    async def ended() -> list[tuple[str, str | None]] | None:
        async with database.engine.connect() as connection:
            rows = (
                await connection.execute(select(_EXECUTIONS.c.status, _EXECUTIONS.c.saved_data))
            ).all()
        found = sorted((str(status), saved) for status, saved in rows)
        return found if all(status in ("SUCCEEDED", "FAILED") for status, _ in found) else None

    assert await until(ended, what="both runs ended") == [
        ("FAILED", "summary"),
        ("SUCCEEDED", "none"),
    ]
    found = await counts(database)
    assert (found["node_run_payloads"], found["execution_payloads"]) == (0, 0)


async def test_an_idempotency_key_outlives_its_execution_until_it_expires(
    http: httpx.AsyncClient,  # noqa: F811 (fixture)
    alice: Caller,
    database: Database,
) -> None:
    # Successful runs keep nothing (the fixture's server-wide default): the repeat after the
    # run ended, within the grace period and once the run is pruned, answers with the first
    # run; once the key expired (LOOM_IDEMPOTENCY_KEY_TTL_HOURS) it starts a new run
    # (docs/api.md).
    await hook_workflow(alice, {"path": "once"})
    key = {"Idempotency-Key": "k-1"}
    first = (await http.post("/webhook/once", json={"n": 1}, headers=key)).json()
    await until(lambda: ended_with(database, "none"), what="the first run ended")
    again = await http.post("/webhook/once", json={"n": 2}, headers=key)
    assert again.status_code == 202, again.text
    assert again.json()["executionId"] == first["executionId"]
    later = utcnow() + timedelta(seconds=61)
    pruned = await prune(database, RetentionPolicy(), only_discarded=True, now=later)
    assert pruned is not None and pruned.executions_deleted == 1
    third = await http.post("/webhook/once", json={"n": 3}, headers=key)
    assert third.json()["executionId"] == first["executionId"]
    # A day later the full prune deletes the key: the same key starts a new run.
    day_later = utcnow() + timedelta(hours=25)
    expired = await prune(database, RetentionPolicy(), now=day_later)
    assert expired is not None and expired.rows_deleted["webhook_idempotency_keys"] == 1
    fourth = await http.post("/webhook/once", json={"n": 4}, headers=key)
    assert fourth.status_code == 202, fourth.text
    assert fourth.json()["executionId"] != first["executionId"]


async def ended_with(database: Database, saved_data: str) -> bool:
    async with database.engine.connect() as connection:
        query = select(func.count()).where(_EXECUTIONS.c.saved_data == saved_data)
        return bool((await connection.execute(query)).scalar_one())


async def test_a_webhook_that_answers_with_the_last_node_still_answers(
    http: httpx.AsyncClient,  # noqa: F811 (fixture)
    alice: Caller,
    database: Database,
) -> None:
    plus = node(
        "plus",
        "Plus",
        "set",
        parameters={"fields": [{"name": "n", "value": "{{ 5 }}"}], "include": "only_set"},
    )
    await hook_workflow(alice, {"path": "answer", "responseMode": "last_node"}, [plus])
    response = await http.post("/webhook/answer", json={})
    assert response.status_code == 200, response.text
    assert response.json() == [{"n": 5}]
    await until(lambda: ended_with(database, "none"), what="the run ended keeping nothing")


async def test_a_caller_gets_the_result_of_a_sub_workflow_that_keeps_nothing(
    app: Any, alice: Caller
) -> None:
    called = await create(
        alice, DOUBLER_NODES, DOUBLER_EDGES, settings={"saveDataOnSuccess": "none"}
    )
    calling = await create(alice, caller_nodes(called), CALLER_EDGES)
    done = await run_to_end(alice, calling, {"n": 21})
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["output"] == [{"n": 42}]
