"""IF, Filter and Switch under the executor: many items, and conditions whose operands are
costly to test, stop at their limits, at the node's timeout and at cancellation.

The work of testing conditions is metered as expressions are (`engine.expressions.budget`):
each condition costs steps, text operands by their characters (ignoring case folds them,
numeric text is parsed), every regex condition of an item shares that item's regex time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.executor import Executor, Outcome, RunOptions, RunRequest
from engine.expressions import ExpressionLimits
from engine.graph import Edge, Graph, Node
from engine.memory_recorder import MemoryRecorder
from engine.node_types import load_registry
from engine.nodes.base import RunInfo
from engine.plan import compile_plan
from engine.states import ExecutionStatus
from tests.engine.node_runner import BUILTINS, context

REGISTRY = load_registry()
UNLIMITED_STEPS = ExpressionLimits(max_steps=10**12, max_value_size=10**12)
LARGE_TEXT = "x" * 5_000_000  # a few milliseconds to scan or fold, each time
MILLION = [{"n": 7}] * 1_000_000


def condition(left: Any, operator: str, right: Any = None) -> dict[str, Any]:
    return {"left": left, "operator": operator, "right": right}


def _parameters(type_name: str, conditions: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    if type_name == "switch":
        return {"rules": [{"conditions": conditions, "combine": "any"}], **fields}
    return {"conditions": conditions, "combine": "any", **fields}


async def _run(
    type_name: str,
    parameters: dict[str, Any],
    item: dict[str, Any],
    options: RunOptions,
    timeout_s: float | None = None,
) -> tuple[Outcome, float]:
    nodes = (
        Node("start", "Start", "manual_trigger"),
        Node("test", "Test", type_name, parameters=parameters, timeout_s=timeout_s),
    )
    graph = Graph(nodes=nodes, edges=(Edge("start", "test"),))
    request = RunRequest(
        execution_id="conditions",
        plan=compile_plan("conditions", graph, REGISTRY),
        info=RunInfo(execution_id="conditions"),
        input=item,
    )
    started = time.perf_counter()
    outcome = await Executor(MemoryRecorder()).run(request, options)
    return outcome, time.perf_counter() - started


def _node_s(outcome: Outcome) -> float:
    duration_ms = outcome.node_runs["test"].duration_ms
    assert duration_ms is not None
    return duration_ms / 1000


TYPES = ["if", "filter", "switch"]


@pytest.mark.parametrize("type_name", TYPES)
async def test_many_conditions_on_large_text_fail_with_expression_limit(type_name: str) -> None:
    # Unmetered, each condition scans 5 MB: 2,000 of them held the loop for seconds.
    conditions = [condition("{{ $json.text }}", "contains", "needle")] * 2000
    outcome, elapsed_s = await _run(
        type_name, _parameters(type_name, conditions), {"text": LARGE_TEXT}, RunOptions()
    )
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error
    assert error is not None and error.type == "EXPRESSION_LIMIT", error
    assert error.details["limit"] == "steps"
    assert error.details["parameter"].endswith("conditions[1]")
    assert elapsed_s < 0.25, f"{elapsed_s:.2f} s"


@pytest.mark.parametrize(
    ("operator", "right"), [("contains", "needle"), ("equals", "y"), ("ends_with", "y")]
)
async def test_conditions_ignoring_case_stop_at_the_node_timeout(operator: str, right: Any) -> None:
    # Limits raised: only the node's timeout stops 400 case-folds of 5 MB (seconds of work).
    conditions = [condition("{{ $json.text }}", operator, right)] * 400
    parameters = _parameters("if", conditions, ignoreCase=True)
    options = RunOptions(expression_limits=UNLIMITED_STEPS)
    outcome, _ = await _run("if", parameters, {"text": LARGE_TEXT}, options, timeout_s=0.5)
    assert outcome.error is not None and outcome.error.type == "NODE_TIMEOUT", outcome.error
    assert _node_s(outcome) < 0.5 + 0.25, f"{_node_s(outcome):.2f} s"


async def test_numeric_text_is_parsed_within_the_limits() -> None:
    digits = "1" * 3_000_000  # read as a number: tens of milliseconds, each time
    conditions = [condition("{{ $json.digits }}", "equals", 5)] * 100
    outcome, elapsed_s = await _run(
        "if", _parameters("if", conditions), {"digits": digits}, RunOptions()
    )
    assert outcome.error is not None and outcome.error.type == "EXPRESSION_LIMIT", outcome.error
    assert elapsed_s < 0.25, f"{elapsed_s:.2f} s"


@pytest.mark.parametrize("type_name", TYPES)
async def test_the_regex_conditions_of_an_item_share_its_regex_time(type_name: str) -> None:
    # Each search of 5 MB stays under the regex time; 500 of them, a second or more.
    conditions = [condition("{{ $json.text }}", "regex", "needle")] * 500
    options = RunOptions(expression_limits=UNLIMITED_STEPS)
    outcome, elapsed_s = await _run(
        type_name, _parameters(type_name, conditions), {"text": LARGE_TEXT}, options
    )
    error = outcome.error
    assert error is not None and error.type == "REGEX_TIMEOUT", error
    assert error.details["limit"] == "regex time"
    assert "took longer than 0.02 s in all" in error.message
    assert elapsed_s < 0.25, f"{elapsed_s:.2f} s"


def _million_items(type_name: str) -> tuple[Any, dict[str, list[Any]]]:
    parameters = _parameters(type_name, [condition("{{ $json.n }}", "gt", 5)])
    inputs = {"main": MILLION}
    return context(type_name, parameters, inputs), inputs


@pytest.mark.parametrize("type_name", TYPES)
async def test_a_million_items_stop_at_the_timeout_within_a_quarter_second(type_name: str) -> None:
    ctx, inputs = _million_items(type_name)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):  # as the executor bounds a node
            await BUILTINS[type_name].execute(ctx, inputs)
    assert time.perf_counter() - started < 0.5 + 0.25


@pytest.mark.parametrize("type_name", TYPES)
async def test_a_million_items_stop_at_cancellation_within_a_quarter_second(
    type_name: str,
) -> None:
    ctx, inputs = _million_items(type_name)
    task = asyncio.create_task(BUILTINS[type_name].execute(ctx, inputs))
    loop = asyncio.get_running_loop()
    cancel_at = loop.time() + 0.3
    loop.call_at(cancel_at, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - cancel_at < 0.25, f"{loop.time() - cancel_at:.2f} s"
