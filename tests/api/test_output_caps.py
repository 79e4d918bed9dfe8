"""Outputs respect their caps: a node output past `LOOM_MAX_NODE_OUTPUT_BYTES` fails its node
and is not stored, and `maxBytes` caps every field that returns stored data (an item larger
than the cap comes back as a truncation marker), on SQLite and PostgreSQL.

The app here has a node type that outputs items of the sizes its parameters ask for, and one
that fails until it has failed once.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlmodel import col, select, update

from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, load_registry
from engine.nodes.base import NodeError, NodeRunContext, PortItems
from server.settings import Settings
from storage import payloads
from storage.db import Database
from storage.models import ExecutionEventRow, ExecutionPayload, NodeRunPayload
from tests.api.test_executions import create, execute, finished
from tests.conftest import Caller
from tests.factories import edge, node

LIMIT = 100_000
# `{"main":[{"s":""}]}`: the output of one item of `n` characters is this much longer.
ONE_ITEM_OVERHEAD = len(b'{"main":[{"s":""}]}')
FAILED_ONCE: set[str] = set()


async def _sized(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Items `{"s": "x" * n}` for each n of the `sizes` parameter."""
    return {"main": [{"s": "x" * size} for size in ctx.parameters()["sizes"]]}


async def _fails_once(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Fails on its first run in an execution's history, then succeeds without items."""
    key = ctx.info.workflow_id
    if key not in FAILED_ONCE:
        FAILED_ONCE.add(key)
        raise NodeError("not this time", error_type="NOT_YET")
    return {}


def _type(name: str, behaviour: Any) -> NodeType:
    return NodeType(
        name=name,
        version=1,
        display_name=name,
        description=f"test node {name}",
        group=NodeGroup.ACTION,
        parameters_schema={"type": "object"},
        execute=behaviour,
    )


@pytest.fixture(scope="module")
def registry() -> NodeTypeRegistry:
    registry = load_registry()
    registry.register(_type("test.sized", _sized))
    registry.register(_type("test.fails_once", _fails_once))
    return registry


@pytest.fixture
def settings() -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        token_cache_s=0.0,
        secret_key="test-secret-key-for-credentials",
        max_node_output_bytes=LIMIT,
    )


async def _run_sized(app: Any, caller: Caller, sizes: list[int], **variables: Any) -> dict:
    workflow_id = await create(
        caller,
        [
            node("start", "Start", "manual_trigger"),
            node("big", "Big", "test.sized", parameters={"sizes": sizes}),
        ],
        [edge("start", "big")],
    )
    started = await execute(caller, workflow_id, **variables)
    return await finished(app, caller, started["id"])


async def _stored_runs(database: Database, execution_id: str) -> set[str]:
    async with database.session() as session:
        rows = await session.exec(
            select(NodeRunPayload.node_run_id).where(NodeRunPayload.execution_id == execution_id)
        )
        return set(rows.all())


async def test_an_output_at_the_limit_is_stored_and_one_past_it_fails_and_stores_nothing(
    app: Any, alice: Caller, database: Database
) -> None:
    at_limit = await _run_sized(app, alice, [LIMIT - ONE_ITEM_OVERHEAD])
    assert at_limit["status"] == "SUCCEEDED"
    big = next(run for run in at_limit["nodeRuns"] if run["nodeId"] == "big")
    assert big["output"] == [{"s": "x" * (LIMIT - ONE_ITEM_OVERHEAD)}]
    assert at_limit["output"] == big["output"]
    assert big["id"] in await _stored_runs(database, at_limit["id"])

    past = await _run_sized(app, alice, [LIMIT - ONE_ITEM_OVERHEAD + 1])
    assert past["status"] == "FAILED"
    assert past["error"]["type"] == "NODE_OUTPUT_TOO_LARGE"
    big = next(run for run in past["nodeRuns"] if run["nodeId"] == "big")
    assert big["status"] == "FAILED" and big["output"] is None and big["outputPorts"] == []
    error = big["error"]
    assert error["type"] == "NODE_OUTPUT_TOO_LARGE"
    assert error["message"] == (
        "node 'Big': produced more output than the limit of 100,000 bytes of JSON "
        "(LOOM_MAX_NODE_OUTPUT_BYTES): at least 100,001 bytes, past it with output 'main' item 0"
    )
    assert error["details"] == {
        "bytes": LIMIT + 1,
        "maxBytes": LIMIT,
        "setting": "LOOM_MAX_NODE_OUTPUT_BYTES",
    }
    assert big["id"] not in await _stored_runs(database, past["id"])
    assert past["output"] is None


CAPPED = """
query($id: ID!, $max: Int!) {
  execution(id: $id) {
    input(maxBytes: $max) inputTruncated(maxBytes: $max)
    output(maxBytes: $max) outputTruncated(maxBytes: $max)
    outputPage(maxBytes: $max) { port items offset total truncated nextOffset }
    rest: outputPage(offset: 1, maxBytes: $max) { items total truncated nextOffset }
    nodeRuns {
      nodeId output(maxBytes: $max) outputTruncated(maxBytes: $max)
      outputPage(maxBytes: $max) { port items offset total truncated nextOffset }
    }
  }
}
"""


def _marker(value: dict[str, Any], size: int, starts: str, cap: int) -> None:
    assert value["$truncated"] is True and value["bytes"] == size
    assert value["preview"].startswith(starts) and len(value["preview"]) > 100
    assert len(orjson.dumps(value)) <= cap


async def test_max_bytes_is_a_real_cap_on_every_field(
    app: Any, alice: Caller, database: Database
) -> None:
    big_input = {"note": "n" * 5000}
    execution = await _run_sized(app, alice, [5000, 10, 10], input=big_input)
    assert execution["status"] == "SUCCEEDED"
    cap = 1000
    data = (await alice.gql(CAPPED, {"id": execution["id"], "max": cap}))["execution"]
    # Seven capped values, and the fields around them.
    assert len(orjson.dumps(data)) <= 7 * cap + 1000

    input_bytes = len(orjson.dumps(big_input))
    _marker(data["input"], input_bytes, '{"note":"nnn', cap)
    assert data["inputTruncated"] is True

    first_bytes = len(b'{"s":""}') + 5000
    (marker,) = data["output"]
    _marker(marker, first_bytes, '{"s":"xxx', cap - 2)
    assert data["outputTruncated"] is True
    page = data["outputPage"]
    assert page["items"] == [marker]
    assert (page["port"], page["offset"], page["total"]) == ("main", 0, 3)
    assert page["truncated"] is True and page["nextOffset"] == 1
    assert data["rest"] == {
        "items": [{"s": "x" * 10}, {"s": "x" * 10}],
        "total": 3,
        "truncated": False,
        "nextOffset": None,
    }

    runs = {run["nodeId"]: run for run in data["nodeRuns"]}
    assert runs["big"]["output"] == [marker] and runs["big"]["outputTruncated"] is True
    assert runs["big"]["outputPage"] == page
    # The trigger's output is the execution input, stored once and read capped the same way.
    (start_marker,) = runs["start"]["output"]
    _marker(start_marker, input_bytes, '{"note":"nnn', cap - 2)
    assert runs["start"]["outputTruncated"] is True
    assert runs["start"]["outputPage"]["items"] == [start_marker]
    assert runs["start"]["outputPage"]["truncated"] is True

    # Live events preview a first item of at most 2 KB: the report is too large for one.
    async with database.session() as session:
        previews = dict(
            (
                await session.exec(
                    select(ExecutionEventRow.node_id, ExecutionEventRow.preview).where(
                        ExecutionEventRow.execution_id == execution["id"],
                        ExecutionEventRow.type == "NODE_SUCCEEDED",
                    )
                )
            ).all()
        )
    assert previews == {"start": None, "big": None}

    # Under the default cap (1 MB) everything comes back whole.
    whole = (await alice.gql(CAPPED, {"id": execution["id"], "max": 1024 * 1024}))["execution"]
    assert whole["input"] == big_input and whole["inputTruncated"] is False
    assert whole["output"] == [{"s": "x" * 5000}, {"s": "x" * 10}, {"s": "x" * 10}]
    assert whole["outputTruncated"] is False


async def test_a_page_ends_before_an_item_that_does_not_fit(app: Any, alice: Caller) -> None:
    execution = await _run_sized(app, alice, [100] * 5 + [200_000 // 4] + [100] * 3)
    assert execution["status"] == "SUCCEEDED"
    query = """query($id: ID!, $offset: Int!) { execution(id: $id) {
      outputPage(offset: $offset, maxBytes: 1000) { items truncated nextOffset } } }"""
    first = (await alice.gql(query, {"id": execution["id"], "offset": 0}))["execution"]
    assert first["outputPage"]["items"] == [{"s": "x" * 100}] * 5
    assert first["outputPage"]["truncated"] is True and first["outputPage"]["nextOffset"] == 5
    large = (await alice.gql(query, {"id": execution["id"], "offset": 5}))["execution"]
    (marker,) = large["outputPage"]["items"]
    assert marker["$truncated"] is True and marker["bytes"] == 50_008
    assert large["outputPage"]["nextOffset"] == 6


@pytest.mark.parametrize("max_bytes", [0, 127, 16 * 1024 * 1024 + 1])
async def test_a_cap_out_of_bounds_is_bad_user_input(
    app: Any, alice: Caller, max_bytes: int
) -> None:
    execution = await _run_sized(app, alice, [10])
    cap = f"(maxBytes: {max_bytes})"
    for selection in (
        f"input{cap}",
        f"inputTruncated{cap}",
        f"output{cap}",
        f"outputTruncated{cap}",
        f"outputPage{cap} {{ items }}",
        f"nodeRuns {{ output{cap} }}",
        f"nodeRuns {{ outputTruncated{cap} }}",
        f"nodeRuns {{ outputPage{cap} {{ items }} }}",
    ):
        response = await alice.post(
            f"query($id: ID!) {{ execution(id: $id) {{ {selection} }} }}", {"id": execution["id"]}
        )
        (error,) = {e["message"]: e for e in response.json()["errors"]}.values()
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "maxBytes"}
        assert error["message"] == (
            f"maxBytes must be between 128 and {16 * 1024 * 1024}, got {max_bytes}"
        )


async def test_outputs_stored_before_chunking_are_read_and_capped(
    app: Any, alice: Caller, database: Database
) -> None:
    """Payloads of earlier releases: a node output as one zstd frame of its JSON, and an
    execution output stored by value as a list."""
    execution = await _run_sized(app, alice, [3000, 10])
    items = [{"s": "x" * 3000}, {"s": "x" * 10}]
    async with database.transaction() as session:
        await session.exec(
            update(NodeRunPayload)
            .where(col(NodeRunPayload.execution_id) == execution["id"])
            .where(col(NodeRunPayload.encoding) == payloads.CHUNKED)
            .values(
                encoding=payloads.ENCODING,
                data=payloads.compress(orjson.dumps({"main": items})),
            )
        )
        await session.exec(
            update(ExecutionPayload)
            .where(col(ExecutionPayload.execution_id) == execution["id"])
            .where(col(ExecutionPayload.kind) == "output")
            .values(encoding=payloads.ENCODING, data=payloads.compress(orjson.dumps(items)))
        )
    data = (await alice.gql(CAPPED, {"id": execution["id"], "max": 1000}))["execution"]
    assert data["output"][0]["$truncated"] is True and data["output"][0]["bytes"] == 3008
    assert data["rest"]["items"] == [{"s": "x" * 10}]
    runs = {run["nodeId"]: run for run in data["nodeRuns"]}
    assert runs["big"]["outputPage"]["items"] == data["output"]
    whole = (await alice.gql(CAPPED, {"id": execution["id"], "max": 10_000}))["execution"]
    assert whole["output"] == items


async def test_an_output_reused_by_a_retry_is_stored_by_value_and_read_capped(
    app: Any, alice: Caller, database: Database
) -> None:
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("big", "Big", "test.sized", parameters={"sizes": [4000, 20]}),
            node("flaky", "Flaky", "test.fails_once"),
        ],
        [edge("start", "big"), edge("start", "flaky")],
    )
    first = await finished(app, alice, (await execute(alice, workflow_id))["id"])
    assert first["status"] == "FAILED"
    data = await alice.gql(
        "mutation($id: ID!) { retryExecution(id: $id) { __typename ... on Execution { id } } }",
        {"id": first["id"]},
    )
    retry = await finished(app, alice, data["retryExecution"]["id"])
    assert retry["status"] == "SUCCEEDED"
    assert [run["nodeId"] for run in retry["nodeRuns"]] == ["flaky"]  # `big` was reused
    async with database.session() as session:
        row = (
            await session.exec(
                select(ExecutionPayload).where(
                    ExecutionPayload.execution_id == retry["id"], ExecutionPayload.kind == "output"
                )
            )
        ).one()
    assert row.encoding == payloads.CHUNKED
    capped = (await alice.gql(CAPPED, {"id": retry["id"], "max": 1000}))["execution"]
    assert capped["output"][0]["bytes"] == 4008
    assert capped["rest"]["items"] == [{"s": "x" * 20}]
    assert capped["outputPage"]["port"] == "main"
