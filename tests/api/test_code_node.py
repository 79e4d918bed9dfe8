"""The Code node over the API: results, console output on the node run, typed errors, and
references to other nodes checked on save and at run time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.settings import Settings
from tests.api.test_executions import create, execute, finished
from tests.conftest import Caller
from tests.factories import CREATE, edge, node

NODE_RUNS = """
query($id: ID!) {
  execution(id: $id) {
    status output error { type message nodeId }
    nodeRuns { nodeName status error { type message details } console { lines truncated } }
  }
}
"""


@pytest.fixture
def settings() -> Settings:
    # The Code node's settings reach its sandbox: scripts without a node timeout get 1 s.
    return Settings(  # type: ignore[call-arg]
        _env_file=None, token_cache_s=0.0, secret_key="test-secret-key", code_timeout_s=1.0
    )


@pytest.fixture(autouse=True)
async def stop_sandboxes(app: Any) -> AsyncIterator[None]:
    """Test apps run no lifespan: stop the app's sandbox processes after each test."""
    yield
    resources = app.state.services.submitter.runner.resources
    if resources is not None and resources.code is not None:
        resources.code.close()


def code(node_id: str, name: str, script: str, **fields: Any) -> dict[str, Any]:
    return node(
        node_id, name, "code", parameters={"code": script, **fields.pop("params", {})}, **fields
    )


async def run(app: Any, caller: Caller, nodes: list[dict], edges: list[dict], **input: Any) -> dict:
    workflow_id = await create(caller, nodes, edges)
    started = await execute(caller, workflow_id, input=input or None)
    await finished(app, caller, started["id"])
    data = await caller.gql(NODE_RUNS, {"id": started["id"]})
    return dict(data["execution"])


def runs(execution: dict) -> dict[str, dict]:
    return {run["nodeName"]: run for run in execution["nodeRuns"]}


async def issues_on_save(
    caller: Caller, a: dict[str, Any], b: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """The node issues of a saved workflow where `a` and `b` both follow a manual trigger
    (neither runs before the other)."""
    nodes = [node("start", "Start", "manual_trigger"), a, b]
    edges = [edge("start", a["id"]), edge("start", b["id"])]
    data = await caller.gql(CREATE, {"input": {"name": "refs", "nodes": nodes, "edges": edges}})
    workflow = data["createWorkflow"]
    assert workflow["__typename"] == "Workflow"
    return {n["id"]: n["issues"] for n in workflow["nodes"]}


async def run_one(app: Any, caller: Caller, name: str, script: str, **input: Any) -> dict:
    """Run a workflow of a manual trigger and one Code node `name` (id `c`) on `input`."""
    nodes = [node("start", "Start", "manual_trigger"), code("c", name, script)]
    return await run(app, caller, nodes, [edge("start", "c")], **input)


async def warm(app: Any, caller: Caller) -> None:
    """Start a sandbox host: a node's time counts from when it asks for one, so a host that
    starts within it (a second or more on a loaded machine) takes from a short timeout."""
    assert (await run_one(app, caller, "Warm", "return []"))["status"] == "SUCCEEDED"


async def test_a_script_maps_items_and_its_console_output_is_kept(app: Any, alice: Caller) -> None:
    script = (
        "console.log('items:', $input.all().length);\n"
        "return $input.all().map((i) => ({json: {...i.json, total: i.json.price * i.json.qty}}));"
    )
    execution = await run_one(app, alice, "Totals", script, price=3, qty=4)
    assert execution["status"] == "SUCCEEDED"
    assert execution["output"] == [{"price": 3, "qty": 4, "total": 12}]
    assert runs(execution)["Totals"]["console"] == {"lines": ["items: 1"], "truncated": False}
    assert runs(execution)["Start"]["console"] is None


async def test_each_item_mode_and_upstream_references(app: Any, alice: Caller) -> None:
    split = code("split", "Split", "return [1, 2, 3].map((n) => ({json: {n}}))")
    double = code(
        "double",
        "Double",
        "return {json: {n: $json.n * 2, from: $('Start').first().json.source, at: $itemIndex}}",
        params={"mode": "each_item"},
    )
    execution = await run(
        app,
        alice,
        [node("start", "Start", "manual_trigger"), split, double],
        [edge("start", "split"), edge("split", "double")],
        source="api",
    )
    assert execution["status"] == "SUCCEEDED", execution["error"]
    assert execution["output"] == [
        {"n": 2, "from": "api", "at": 0},
        {"n": 4, "from": "api", "at": 1},
        {"n": 6, "from": "api", "at": 2},
    ]


async def test_a_thrown_error_fails_the_node_with_its_line_and_console(
    app: Any, alice: Caller
) -> None:
    script = "console.log('checking');\nif (!$json.id) {\n  throw new Error('no id');\n}\nreturn []"
    execution = await run_one(app, alice, "Check", script)
    assert execution["status"] == "FAILED"
    failed = runs(execution)["Check"]
    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "CODE_ERROR"
    assert failed["error"]["message"] == "node 'Check': Error: no id (line 3, column 9)"
    assert failed["error"]["details"] == {"line": 3, "column": 9}
    assert failed["console"] == {"lines": ["checking"], "truncated": False}
    assert execution["error"]["nodeId"] == "c"


@pytest.mark.parametrize(
    "spin",
    [
        "while (true) {}",
        "await null; while (true) {}",
        "Promise.resolve().then(() => { for (;;) {} })",
    ],
    ids=["returns", "awaits", "leaves-a-job"],
)
async def test_the_nodes_timeout_stops_the_script_as_code_timeout(
    app: Any, alice: Caller, spin: str
) -> None:
    await warm(app, alice)
    execution = await run(
        app,
        alice,
        [
            node("start", "Start", "manual_trigger"),
            code("c", "Spin", spin, timeoutSeconds=0.5),
        ],
        [edge("start", "c")],
    )
    failed = runs(execution)["Spin"]
    assert failed["error"]["type"] == "CODE_TIMEOUT"
    assert (
        failed["error"]["message"] == "node 'Spin': the code ran longer than 0.5 s and was stopped"
    )


async def test_a_script_is_not_a_template(app: Any, alice: Caller) -> None:
    script = "const name = 'Ada';\nreturn [{json: {text: `{{ ${name} }}`}}]"
    execution = await run_one(app, alice, "Text", script)
    assert execution["output"] == [{"text": "{{ Ada }}"}]


async def test_a_literal_reference_to_a_node_not_upstream_is_a_node_issue(alice: Caller) -> None:
    issues = await issues_on_save(
        alice,
        code("a", "Branch A", "return [{json: {a: 1}}]"),
        code("b", "Branch B", "return $('Branch A').all().concat($node['Nowhere'].all())"),
    )
    assert issues["a"] == []
    (issue,) = issues["b"]  # one problem per field; the first name, alphabetically
    assert issue["code"] == "INVALID_NODE_REFERENCE"
    assert issue["field"] == "parameters.code"
    assert "'Branch A', which does not run before this node" in issue["message"]


async def test_a_reference_built_at_run_time_to_a_node_not_upstream_fails(
    app: Any, alice: Caller
) -> None:
    execution = await run(
        app,
        alice,
        [
            node("start", "Start", "manual_trigger"),
            code("a", "Side", "return [{json: {a: 1}}]"),
            code("b", "Reader", "const name = ['Si', 'de'].join('');\nreturn $(name).all()"),
        ],
        [edge("start", "a"), edge("start", "b")],
    )
    failed = runs(execution)["Reader"]
    assert failed["status"] == "FAILED"
    assert "no node named 'Side' runs before this node" in failed["error"]["message"]


async def test_without_a_node_timeout_the_settings_timeout_stops_the_script(
    app: Any, alice: Caller
) -> None:
    await warm(app, alice)
    execution = await run_one(app, alice, "Spin", "for (;;) {}")
    failed = runs(execution)["Spin"]
    assert failed["error"]["type"] == "CODE_TIMEOUT"
    assert failed["error"]["message"] == "node 'Spin': the code ran longer than 1 s and was stopped"
    assert failed["error"]["details"]["timeoutSeconds"] == 1.0


async def test_a_reference_the_source_does_not_spell_out_reaches_upstream_nodes(
    app: Any, alice: Caller
) -> None:
    script = (
        "const name = ['Si', 'de'].join('');\n"
        "return [{json: {side: $(name).first().json.a, start: $($json.source).first().json.from,"
        " escaped: $('\\u0053ide').first().json.a, member: $node.S\\u0069de.json.a}}]"
    )
    execution = await run(
        app,
        alice,
        [
            node("start", "Start", "manual_trigger"),
            code("a", "Side", "return [{json: {a: 1, source: 'Start'}}]"),
            code("b", "Reader", script),
        ],
        [edge("start", "a"), edge("a", "b")],
        **{"from": "Start"},
    )
    assert execution["status"] == "SUCCEEDED", runs(execution)["Reader"]["error"]
    assert execution["output"] == [{"side": 1, "start": "Start", "escaped": 1, "member": 1}]


async def test_an_escaped_name_is_checked_on_save_as_javascript_reads_it(alice: Caller) -> None:
    issues = await issues_on_save(
        alice,
        code("a", "Side", "return [{json: {a: 1}}]"),
        code("b", "Reader", "return $('\\u0053ide').all()"),
    )
    (issue,) = issues["b"]
    assert issue["code"] == "INVALID_NODE_REFERENCE"
    assert "'Side', which does not run before this node" in issue["message"]


async def test_text_that_is_not_unicode_fails_the_node_and_prints_well_formed(
    app: Any, alice: Caller
) -> None:
    script = "console.log('half a pair: \\ud83d');\nreturn [{json: {text: 'x\\ud800'}}]"
    execution = await run_one(app, alice, "Halves", script)
    failed = runs(execution)["Halves"]
    assert failed["status"] == "FAILED"
    assert failed["error"]["type"] == "CODE_ERROR"
    assert failed["error"]["message"] == (
        "node 'Halves': item 0 of the result holds text with a lone UTF-16 surrogate "
        "(\\ud800), which is not valid Unicode (text.toWellFormed() replaces each with U+FFFD)"
    )
    assert failed["console"] == {"lines": ["half a pair: \ufffd"], "truncated": False}


async def test_a_script_that_waits_for_a_sandbox_past_its_timeout_fails_without_running(
    app: Any, alice: Caller
) -> None:
    # Both sandboxes spin; the third script's 0.5 s pass while it waits for one.
    spin = "while (true) {}"
    execution = await run(
        app,
        alice,
        [
            node("start", "Start", "manual_trigger"),
            code("a", "Spin A", spin, timeoutSeconds=2),
            code("b", "Spin B", spin, timeoutSeconds=2),
            code("late", "Late", "return [{json: {ran: true}}]", timeoutSeconds=0.5),
        ],
        [edge("start", "a"), edge("start", "b"), edge("start", "late")],
    )
    late = runs(execution)["Late"]
    assert late["error"]["type"] == "CODE_TIMEOUT"
    assert late["error"]["message"] == (
        "node 'Late': the code did not start within 0.5 s: all 2 code sandboxes were busy "
        "(LOOM_CODE_SANDBOXES)"
    )
    assert late["error"]["details"]["sandboxes"] == 2
