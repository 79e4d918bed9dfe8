"""The editor loop's reads: `evaluateExpression`, `evaluateParameters`, `outputSchema` and
`inputSchema`, against the data of real manual executions."""

from __future__ import annotations

from typing import Any

from tests.api.test_executions import create, execute, finished
from tests.conftest import Caller
from tests.factories import edge, node

EVALUATE = """
query($w: ID!, $n: ID!, $e: String!, $i: Int! = 0, $x: ID, $max: Int! = 65536) {
  evaluateExpression(workflowId: $w, nodeId: $n, expression: $e, itemIndex: $i,
                     executionId: $x, maxBytes: $max) {
    __typename
    ... on ExpressionValue { value type truncated executionId itemIndex itemCount }
    ... on ExpressionError {
      code message parameter limit setting executionId position { start end }
    }
    ... on NoDataError { message nodeId executionId }
    ... on NotFoundError { message id }
    ... on ValidationError { message problems { code field nodeId } }
  }
}
"""
EVALUATE_PARAMETERS = """
query($w: ID!, $n: ID!, $i: Int! = 0) {
  evaluateParameters(workflowId: $w, nodeId: $n, itemIndex: $i) {
    __typename
    ... on ExpressionValue { value type }
    ... on ExpressionError { code parameter position { start end } }
    ... on NoDataError { message }
    ... on NotFoundError { id }
  }
}
"""
SHAPE_FIELDS = (
    "port totalItems sampledItems truncated executionId fields { path types example itemCount }"
)
NODE_RUN_SHAPES = f"""
query($id: ID!) {{
  execution(id: $id) {{ nodeRuns {{ nodeId outputSchema {{ {SHAPE_FIELDS} }} }} }}
}}
"""
INPUT_SHAPE = f"""
query($w: ID!, $n: ID!) {{
  workflow(id: $w) {{ node(id: $n) {{ name inputSchema {{ {SHAPE_FIELDS} }} }} }}
}}
"""

ROWS = [
    {"name": "Ada", "price": 2, "qty": 3, "address": {"city": "Oslo"}, "tags": ["a", "b"]},
    {"name": "Bob", "price": 5, "qty": 1, "address": None, "id": "x"},
    {"name": 7, "orders": [{"sku": "s1", "qty": 1}, {"sku": "s2"}]},
]


def _workflow_nodes(target_parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        node("start", "Start", "manual_trigger"),
        node("split", "Split", "split_out", parameters={"field": "rows"}),
        node(
            "target",
            "Target",
            "set",
            parameters=target_parameters
            or {"fields": [{"name": "total", "value": "{{ $json.price * $json.qty }}"}]},
        ),
    ]


EDGES = [edge("start", "split"), edge("split", "target")]


async def _ran(app: Any, caller: Caller, **parameters: Any) -> tuple[str, str]:
    """A workflow run once over ROWS: (workflow id, execution id)."""
    workflow_id = await create(caller, _workflow_nodes(parameters or None), EDGES)
    started = await execute(caller, workflow_id, input={"rows": ROWS})
    execution = await finished(app, caller, started["id"])
    return workflow_id, execution["id"]


async def _evaluate(caller: Caller, workflow_id: str, text: str, **more: Any) -> dict[str, Any]:
    variables = {"w": workflow_id, "n": more.pop("node", "target"), "e": text, **more}
    return dict((await caller.gql(EVALUATE, variables))["evaluateExpression"])


async def test_values_of_the_latest_manual_run(app: Any, alice: Caller) -> None:
    workflow_id, execution_id = await _ran(app, alice)
    cases: list[tuple[str, int, Any]] = [
        ("{{ $json.price * $json.qty }}", 0, 6),
        ("{{ $json.name }}", 1, "Bob"),
        ("{{ $input.all().length }}", 0, 3),
        ("{{ $input.all()[2].orders[1].sku }}", 0, "s2"),
        ("{{ $('Split').item.name }}", 1, "Bob"),
        ("{{ $('Split').first().address.city }}", 2, "Oslo"),
        ("{{ $('Start').item.rows.length }}", 0, 3),
        ("{{ $execution.id }}", 0, execution_id),
        ("Workflow: {{ $workflow.name }}", 0, "Workflow: Run me"),
        ("{{ $json }}", 0, ROWS[0]),
    ]
    for text, index, expected in cases:
        result = await _evaluate(alice, workflow_id, text, i=index)
        assert result["__typename"] == "ExpressionValue", (text, result)
        assert result["value"] == expected, text
        assert result["executionId"] == execution_id and result["itemCount"] == 3
    assert (await _evaluate(alice, workflow_id, "{{ $json }}"))["type"] == "object"


async def test_a_named_execution_is_used_and_must_be_of_the_workflow(
    app: Any, alice: Caller
) -> None:
    workflow_id, first = await _ran(app, alice)
    started = await execute(alice, workflow_id, input={"rows": [{"name": "Cy"}]})
    await finished(app, alice, started["id"])
    latest = await _evaluate(alice, workflow_id, "{{ $json.name }}")
    assert latest["value"] == "Cy" and latest["executionId"] == started["id"]
    chosen = await _evaluate(alice, workflow_id, "{{ $json.name }}", x=first)
    assert chosen["value"] == "Ada" and chosen["executionId"] == first
    other_workflow, other_execution = await _ran(app, alice)
    wrong = await _evaluate(alice, workflow_id, "{{ 1 }}", x=other_execution)
    assert wrong["__typename"] == "NotFoundError" and wrong["id"] == other_execution
    assert other_workflow != workflow_id


async def test_errors_carry_the_runs_code_and_their_position(app: Any, alice: Caller) -> None:
    workflow_id, execution_id = await _ran(app, alice)
    syntax = await _evaluate(alice, workflow_id, "Total: {{ $json.price * }}")
    assert syntax["__typename"] == "ExpressionError" and syntax["code"] == "EXPRESSION_SYNTAX"
    # At the end of the expression's text, where an operand is missing.
    assert syntax["position"] == {"start": 23, "end": 23}
    failing = "Hi {{ $json.address.city.x }}"
    runtime = await _evaluate(alice, workflow_id, failing, i=1)
    assert runtime["code"] == "EXPRESSION_ERROR"
    assert "cannot read 'city' of null" in runtime["message"]
    start, end = runtime["position"]["start"], runtime["position"]["end"]
    assert failing[start:end] == "$json.address.city"
    assert runtime["executionId"] == execution_id
    unknown = await _evaluate(alice, workflow_id, "{{ $('Nobody').item }}")
    assert unknown["code"] == "EXPRESSION_ERROR"
    assert "no output of node 'Nobody'" in unknown["message"]


async def test_past_the_limits_is_the_same_error_as_at_run_time(app: Any, alice: Caller) -> None:
    text = "{{ ['x'*1000000]*200 }}"
    workflow_id, _ = await _ran(app, alice, fields=[{"name": "v", "value": text}])
    preview = await _evaluate(alice, workflow_id, text)
    assert preview["__typename"] == "ExpressionError"
    assert preview["code"] == "EXPRESSION_LIMIT" and preview["limit"] == "value size"
    assert preview["setting"] == "LOOM_EXPRESSION_MAX_VALUE_SIZE"
    # The list that would be too large, as the message says.
    assert text[3:16] == "['x'*1000000]" and preview["position"] == {"start": 3, "end": 16}
    # The run of the same expression failed the node with the same code.
    data = await alice.gql(
        "query($w: ID!) { executions(workflowId: $w) { edges { node { error { type } } } } }",
        {"w": workflow_id},
    )
    assert data["executions"]["edges"][0]["node"]["error"]["type"] == preview["code"]


async def test_the_whole_parameters_render_or_name_what_fails(app: Any, alice: Caller) -> None:
    workflow_id, _ = await _ran(app, alice)
    rendered = (await alice.gql(EVALUATE_PARAMETERS, {"w": workflow_id, "n": "target", "i": 1}))[
        "evaluateParameters"
    ]
    assert rendered == {
        "__typename": "ExpressionValue",
        "value": {"fields": [{"name": "total", "value": 5}]},
        "type": "object",
    }
    failing = (await alice.gql(EVALUATE_PARAMETERS, {"w": workflow_id, "n": "target", "i": 2}))[
        "evaluateParameters"
    ]
    assert failing["__typename"] == "ExpressionError"
    assert failing["code"] == "EXPRESSION_ERROR" and failing["parameter"] == "fields[0].value"


async def test_a_value_larger_than_max_bytes_is_a_marker(app: Any, alice: Caller) -> None:
    workflow_id, _ = await _ran(app, alice)
    result = await _evaluate(alice, workflow_id, "{{ 'y' * 5000 }}", max=1024)
    assert result["truncated"] is True and result["type"] == "string"
    assert result["value"]["$truncated"] is True and result["value"]["bytes"] == 5002
    variables = {"w": workflow_id, "n": "target", "e": "{{ 1 }}", "max": 1}
    body = (await alice.post(EVALUATE, variables)).json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "maxBytes"}


async def test_a_node_with_no_data_yet_says_what_to_run(app: Any, alice: Caller) -> None:
    workflow_id = await create(alice, _workflow_nodes(), EDGES)
    never_ran = await _evaluate(alice, workflow_id, "{{ $json.name }}")
    assert never_ran["__typename"] == "NoDataError"
    assert never_ran["message"] == (
        "node 'Target' has no data yet: workflow 'Run me' has no manual execution; "
        "run the workflow first"
    )
    assert never_ran["nodeId"] == "target" and never_ran["executionId"] is None
    # A run that stops before the node: its upstream node did not run.
    stopped = await execute(alice, workflow_id, input={"no_rows": True})
    await finished(app, alice, stopped["id"])
    upstream_failed = await _evaluate(alice, workflow_id, "{{ $json.name }}")
    assert upstream_failed["__typename"] == "NoDataError"
    assert "'Split' did not run successfully" in upstream_failed["message"]
    assert "run the workflow" in upstream_failed["message"]
    assert upstream_failed["executionId"] == stopped["id"]
    # A node the expression names that did not run successfully: no data either.
    named = await _evaluate(alice, workflow_id, "{{ $('Split').first() }}", node="split")
    assert named["__typename"] == "NoDataError"
    assert named["message"].startswith(f"node 'Split' has no data in execution '{stopped['id']}'")


async def test_bad_input_is_a_typed_result(app: Any, alice: Caller, bob: Caller) -> None:
    workflow_id, execution_id = await _ran(app, alice)
    missing_node = await _evaluate(alice, workflow_id, "{{ 1 }}", node="nope")
    assert missing_node["__typename"] == "NotFoundError" and missing_node["id"] == "nope"
    assert "node 'nope' not found" in missing_node["message"]
    out_of_range = await _evaluate(alice, workflow_id, "{{ 1 }}", i=3)
    assert out_of_range["__typename"] == "ValidationError"
    assert out_of_range["problems"] == [
        {"code": "ITEM_INDEX_OUT_OF_RANGE", "field": "itemIndex", "nodeId": "target"}
    ]
    assert "receives 3 items" in out_of_range["message"]
    negative = await _evaluate(alice, workflow_id, "{{ 1 }}", i=-1)
    assert negative["problems"][0]["code"] == "ITEM_INDEX_OUT_OF_RANGE"
    # Another user's workflow, and another user's execution with one's own workflow.
    theirs = await _evaluate(bob, workflow_id, "{{ 1 }}")
    assert theirs["__typename"] == "NotFoundError" and theirs["id"] == workflow_id
    bob_workflow, _ = await _ran(app, bob)
    borrowed = await _evaluate(bob, bob_workflow, "{{ 1 }}", x=execution_id)
    assert borrowed["__typename"] == "NotFoundError" and borrowed["id"] == execution_id
    parameters = await bob.gql(EVALUATE_PARAMETERS, {"w": workflow_id, "n": "target"})
    assert parameters["evaluateParameters"]["__typename"] == "NotFoundError"
    missing_workflow = await _evaluate(alice, "no-such-workflow", "{{ 1 }}")
    assert missing_workflow["__typename"] == "NotFoundError"
    too_long = await _evaluate(alice, workflow_id, "x" * 100_001)
    assert too_long["problems"] == [
        {"code": "TEXT_TOO_LONG", "field": "expression", "nodeId": None}
    ]


async def test_node_runs_expose_the_shape_of_their_output(app: Any, alice: Caller) -> None:
    _, execution_id = await _ran(app, alice)
    runs = (await alice.gql(NODE_RUN_SHAPES, {"id": execution_id}))["execution"]["nodeRuns"]
    shape = next(run for run in runs if run["nodeId"] == "split")["outputSchema"]
    assert shape["port"] == "main" and shape["totalItems"] == 3 and shape["sampledItems"] == 3
    assert shape["truncated"] is False and shape["executionId"] is None
    fields = {field["path"]: field for field in shape["fields"]}
    assert fields["name"] == {
        "path": "name",
        "types": ["string", "number"],
        "example": "Ada",
        "itemCount": 3,
    }
    assert fields["address"]["types"] == ["null", "object"]
    assert fields["address.city"] == {
        "path": "address.city",
        "types": ["string"],
        "example": "Oslo",
        "itemCount": 1,
    }
    assert fields["tags[]"]["example"] == "a"
    assert fields["orders[].sku"]["itemCount"] == 1
    assert fields["orders"]["types"] == ["array"] and fields["orders"]["example"] is None
    assert list(fields)[:3] == ["name", "price", "qty"]
    # Asked again: the same shape (cached for a finished run).
    again = (await alice.gql(NODE_RUN_SHAPES, {"id": execution_id}))["execution"]["nodeRuns"]
    assert again == runs


async def test_a_large_output_is_shaped_from_a_bounded_sample(app: Any, alice: Caller) -> None:
    rows = [{f"f{i % 700}": i, "n": i} for i in range(5_000)]
    workflow_id = await create(alice, _workflow_nodes(), EDGES)
    started = await execute(alice, workflow_id, input={"rows": rows})
    await finished(app, alice, started["id"])
    runs = (await alice.gql(NODE_RUN_SHAPES, {"id": started["id"]}))["execution"]["nodeRuns"]
    shape = next(run for run in runs if run["nodeId"] == "split")["outputSchema"]
    assert shape["totalItems"] == 5_000 and shape["sampledItems"] == 1_000
    assert shape["truncated"] is True and len(shape["fields"]) == 500
    assert shape["fields"][1] == {
        "path": "n",
        "types": ["number"],
        "example": 0,
        "itemCount": 1_000,
    }


async def test_a_nodes_input_schema_comes_from_the_latest_manual_run(
    app: Any, alice: Caller
) -> None:
    workflow_id = await create(alice, _workflow_nodes(), EDGES)
    before = await alice.gql(INPUT_SHAPE, {"w": workflow_id, "n": "target"})
    assert before["workflow"]["node"] == {"name": "Target", "inputSchema": None}
    started = await execute(alice, workflow_id, input={"rows": ROWS})
    await finished(app, alice, started["id"])
    shape = (await alice.gql(INPUT_SHAPE, {"w": workflow_id, "n": "target"}))["workflow"]["node"][
        "inputSchema"
    ]
    assert shape["executionId"] == started["id"] and shape["totalItems"] == 3
    assert {"name", "price", "address.city", "orders[].sku"} <= {f["path"] for f in shape["fields"]}
    start = (await alice.gql(INPUT_SHAPE, {"w": workflow_id, "n": "start"}))["workflow"]["node"]
    paths = [field["path"] for field in start["inputSchema"]["fields"]]
    assert paths[:3] == ["rows", "rows[]", "rows[].name"]
    nothing = await alice.gql(INPUT_SHAPE, {"w": workflow_id, "n": "missing"})
    assert nothing["workflow"]["node"] is None
    every = await alice.gql(
        "query($w: ID!) { workflow(id: $w) { nodes { id inputSchema { totalItems } } } }",
        {"w": workflow_id},
    )
    assert every["workflow"]["nodes"] == [
        {"id": "start", "inputSchema": {"totalItems": 1}},
        {"id": "split", "inputSchema": {"totalItems": 1}},
        {"id": "target", "inputSchema": {"totalItems": 3}},
    ]


async def test_an_output_larger_than_previews_read_is_not_decoded(
    app: Any, alice: Caller, monkeypatch: Any
) -> None:
    from storage import previews

    workflow_id, execution_id = await _ran(app, alice)
    # Split's output (the target's input) is a few hundred bytes: over a limit of 100.
    monkeypatch.setattr(previews, "MAX_PREVIEW_OUTPUT_BYTES", 100)
    app.state.services.preview_outputs.__init__()  # nothing decoded kept from before
    for text, node_id in (("{{ $json.name }}", "target"), ("{{ $('Split').first() }}", "split")):
        result = await _evaluate(alice, workflow_id, text, node=node_id)
        assert result["__typename"] == "NoDataError", result
        assert "too large to preview" in result["message"], result
        assert result["executionId"] == execution_id


async def test_a_test_step_run_is_not_the_data_previews_read(app: Any, alice: Caller) -> None:
    workflow_id, execution_id = await _ran(app, alice)
    tested = await alice.gql(
        'mutation($w: ID!, $items: JSON!) { executeNode(workflowId: $w, nodeId: "target", '
        "items: $items) { ... on Execution { id } } }",
        {"w": workflow_id, "items": [{"price": 1, "qty": 1}]},
    )
    await finished(app, alice, tested["executeNode"]["id"])
    result = await _evaluate(alice, workflow_id, "{{ $json.name }}", i=1)
    assert (result["value"], result["executionId"]) == ("Bob", execution_id), result
