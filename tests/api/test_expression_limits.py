"""Expression limits as the API shows them, and as the deployment's settings set them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.expressions.budget import DEFAULT_LIMITS
from server.settings import Settings
from tests.api.test_executions import create, execute, finished
from tests.conftest import Caller
from tests.event_loop import longest_hold
from tests.factories import CREATE, edge, node


async def _run_set(app: Any, caller: Caller, value: str) -> dict[str, Any]:
    workflow_id = await create(
        caller,
        [
            node("start", "Start", "manual_trigger"),
            node("s", "Set", "set", parameters={"fields": [{"name": "v", "value": value}]}),
        ],
        [edge("start", "s")],
    )
    started = await execute(caller, workflow_id)
    return await finished(app, caller, started["id"])


async def test_a_value_past_the_limit_fails_the_node_with_expression_limit(
    app: Any, alice: Caller
) -> None:
    execution = await _run_set(app, alice, "{{ ['x'*1000000]*200 }}")
    assert execution["status"] == "FAILED"
    error = execution["error"]
    assert error["type"] == "EXPRESSION_LIMIT"
    assert "node 'Set' in parameter 'fields[0].value'" in error["message"]
    assert "expression limit 'value size' exceeded" in error["message"]
    assert error["details"] == {
        "expression": "['x'*1000000]*200",
        "parameter": "fields[0].value",
        "limit": "value size",
        "setting": "LOOM_EXPRESSION_MAX_VALUE_SIZE",
    }
    (set_run,) = [run for run in execution["nodeRuns"] if run["nodeId"] == "s"]
    assert set_run["status"] == "FAILED" and set_run["error"]["type"] == "EXPRESSION_LIMIT"


def test_the_settings_default_to_the_engines_limits() -> None:
    assert Settings(_env_file=None).expression_limits() == DEFAULT_LIMITS  # type: ignore[call-arg]


class TestLimitsSetByTheDeployment:
    """A deployment with smaller limits than the defaults (`LOOM_EXPRESSION_*`)."""

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(  # type: ignore[call-arg]
            _env_file=None,
            token_cache_s=0.0,
            secret_key="test-secret-key-for-credentials",
            expression_max_steps=5_000,
            expression_max_value_size=10_000,
        )

    @pytest.mark.parametrize(
        ("value", "limit"),
        [("{{ 'x' * 20000 }}", "value size"), ("{{ len(sorted([3, 1, 2] * 3000)) }}", "steps")],
    )
    async def test_expressions_within_the_defaults_fail_past_its_limits(
        self, app: Any, alice: Caller, value: str, limit: str
    ) -> None:
        # Both run with the default limits (tests/engine/test_expression_limits.py).
        execution = await _run_set(app, alice, value)
        assert execution["error"]["type"] == "EXPRESSION_LIMIT", execution["error"]
        assert execution["error"]["details"]["limit"] == limit


COSTLY_PATTERN = "(?:(?:a{1000}){1000}){1000}"


async def test_a_costly_literal_pattern_is_a_node_issue_on_save(alice: Caller) -> None:
    condition = {"left": "{{ $json.a }}", "operator": "regex", "right": COSTLY_PATTERN}
    data = await alice.gql(
        CREATE,
        {
            "input": {
                "name": "Costly pattern",
                "nodes": [
                    node("start", "Start", "manual_trigger"),
                    node("if", "If", "if", parameters={"conditions": [condition]}),
                ],
                "edges": [edge("start", "if")],
            }
        },
    )
    workflow = data["createWorkflow"]
    assert workflow["__typename"] == "Workflow", workflow
    (issue,) = workflow["nodes"][1]["issues"]
    assert issue["code"] == "INVALID_REGEX"
    assert issue["field"] == "parameters.conditions[0].right"
    assert "expression limit 'regex size' exceeded" in issue["message"]


async def test_a_costly_pattern_from_data_fails_the_node_with_expression_limit(
    app: Any, alice: Caller
) -> None:
    condition = {"left": "{{ $json.a }}", "operator": "regex", "right": "{{ $json.p }}"}
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("if", "If", "if", parameters={"conditions": [condition]}),
        ],
        [edge("start", "if")],
    )
    started = await execute(alice, workflow_id, input={"a": "aaa", "p": COSTLY_PATTERN})
    execution = await finished(app, alice, started["id"])
    error = execution["error"]
    assert error["type"] == "EXPRESSION_LIMIT", error
    assert error["message"].startswith("node 'If': Condition 'conditions[0].right': ")
    assert "expression limit 'regex size' exceeded" in error["message"]
    assert error["details"] == {"parameter": "conditions[0].right", "limit": "regex size"}


def _long_expressions(count: int) -> list[str]:
    """`count` distinct expressions of about 10,000 characters (the most an expression may
    have), each costing milliseconds to compile: valid ones, ones refused once parsed, and
    ones nested too deeply."""
    token = time.perf_counter_ns()  # new to this process's compile cache
    shapes = [
        lambda index: "[" + ",".join(f"'{token}-{index}-{n}'" for n in range(9000 // 30)) + "]",
        lambda index: "<".join([str(index)] + ["1"] * 4990),
        lambda index: "-" * 9980 + str(index),
    ]
    return ["{{ " + shapes[index % 3](index)[:9990] + " }}" for index in range(count)]


async def test_saving_many_long_expressions_holds_the_event_loop_briefly(alice: Caller) -> None:
    # 300 nodes of one long expression each: 3 MB, seconds of compiling in all (it held the
    # loop for 5.7 s in one stretch).
    nodes = [node("start", "Start", "manual_trigger")]
    nodes += [
        node(f"s{index}", f"Set {index}", "set", parameters={"fields": [{"name": "v", "value": v}]})
        for index, v in enumerate(_long_expressions(300))
    ]
    async with longest_hold(without_old_garbage=True) as hold:
        data = await alice.gql(CREATE, {"input": {"name": "Long", "nodes": nodes, "edges": []}})
    workflow = data["createWorkflow"]
    assert workflow["__typename"] == "Workflow", workflow
    issues = [issue["code"] for saved in workflow["nodes"] for issue in saved["issues"]]
    assert issues.count("EXPRESSION_SYNTAX") == 200  # two shapes of three are refused
    # One expression's compiling, a slice, and the request's own work (decoding 3 MB of
    # JSON, storing it) at most; a loaded 2-core machine slows each.
    assert hold.longest_s < 0.25, f"held the loop {hold.longest_s * 1000:.0f} ms"
