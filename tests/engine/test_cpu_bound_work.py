"""CPU-bound node work under the executor: timeouts, cancellation and the event loop.

The workflows are built-in nodes only: a trigger, `split_out` into many items, and a `set`
node whose expression costs milliseconds per item, within the default expression limits,
or (limits raised) one evaluation that alone would run for seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from engine.executor import Executor, Outcome, RunOptions, RunRequest
from engine.expressions import ExpressionLimits
from engine.graph import Edge, Graph, Node
from engine.loop_monitor import monitoring
from engine.memory_recorder import MemoryRecorder
from engine.node_types import load_registry
from engine.nodes.base import RunInfo
from engine.plan import compile_plan
from engine.states import ExecutionStatus
from tests.event_loop import longest_hold

REGISTRY = load_registry()
# About 5 to 20 ms of expression work per item: 10,000 items are minutes of work.
HEAVY = "{{ len(json([{'a': $json.n, 'b': [1, 2]}] * 6000)) }}"
ROWS = {"rows": [{"n": index} for index in range(10_000)]}
# Input data that takes seconds to measure (a small list met 5,000,000 times, looked into
# each time) while taking little memory.
LONG_TO_MEASURE = [[0]] * 5_000_000
UNLIMITED = ExpressionLimits(max_steps=10**12, max_value_size=10**12)


def _workflow(value: str, **set_fields: Any) -> Graph:
    nodes = (
        Node("start", "Start", "manual_trigger"),
        Node("split", "Split", "split_out", parameters={"field": "rows"}),
        Node(
            "work",
            "Work",
            "set",
            parameters={"fields": [{"name": "value", "value": value}]},
            **set_fields,
        ),
    )
    edges = (Edge("start", "split"), Edge("split", "work"))
    return Graph(nodes=nodes, edges=edges)


def _request(graph: Graph, input: dict[str, Any], execution_id: str = "cpu") -> RunRequest:
    return RunRequest(
        execution_id=execution_id,
        plan=compile_plan(execution_id, graph, REGISTRY),
        info=RunInfo(execution_id=execution_id),
        input=input,
    )


async def _run(graph: Graph, input: dict[str, Any], options: RunOptions) -> tuple[Outcome, float]:
    started = time.perf_counter()
    outcome = await Executor(MemoryRecorder()).run(_request(graph, input), options)
    return outcome, time.perf_counter() - started


def _node_s(outcome: Outcome) -> float:
    """How long the `set` node ran, from its start to its end as recorded."""
    duration_ms = outcome.node_runs["work"].duration_ms
    assert duration_ms is not None
    return duration_ms / 1000


async def test_a_node_timeout_stops_a_cpu_heavy_set_node_within_a_quarter_second() -> None:
    outcome, _ = await _run(_workflow(HEAVY, timeout_s=0.5), ROWS, RunOptions())
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_TIMEOUT", outcome.error
    assert _node_s(outcome) < 0.5 + 0.25, f"{_node_s(outcome):.2f} s"


async def test_an_execution_timeout_stops_a_cpu_heavy_set_node_within_a_quarter_second() -> None:
    outcome, elapsed_s = await _run(_workflow(HEAVY), ROWS, RunOptions(execution_timeout_s=0.5))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "EXECUTION_TIMEOUT", outcome.error
    assert elapsed_s < 0.5 + 0.25, f"{elapsed_s:.2f} s"


@pytest.mark.parametrize(
    ("set_fields", "options", "error_type"),
    [
        ({"timeout_s": 0.5}, RunOptions(expression_limits=UNLIMITED), "NODE_TIMEOUT"),
        (
            {},
            RunOptions(execution_timeout_s=0.5, expression_limits=UNLIMITED),
            "EXECUTION_TIMEOUT",
        ),
    ],
)
async def test_a_timeout_stops_one_long_evaluation_at_a_budget_boundary(
    set_fields: dict[str, Any], options: RunOptions, error_type: str
) -> None:
    # Limits raised so far that nothing but the deadline stops it: measuring the list alone
    # (to turn it into text) takes seconds, and yields nowhere.
    graph = _workflow("{{ len(str($('Start').first().data)) }}", **set_fields)
    outcome, elapsed_s = await _run(graph, {"rows": [{"n": 1}], "data": LONG_TO_MEASURE}, options)
    assert outcome.error is not None and outcome.error.type == error_type, outcome.error
    # The node's own time for its timeout; the whole run's for the execution's.
    taken_s = _node_s(outcome) if error_type == "NODE_TIMEOUT" else elapsed_s
    assert taken_s < 0.5 + 0.25, f"{taken_s:.2f} s"


async def test_cancelling_a_cpu_heavy_run_stops_it_within_a_quarter_second() -> None:
    recorder = MemoryRecorder()
    task = asyncio.create_task(Executor(recorder).run(_request(_workflow(HEAVY), ROWS)))
    # Cancelled by the event loop at a set time, well into the set node's items: late if
    # the node holds the loop (as a request to cancel it would be).
    loop = asyncio.get_running_loop()
    cancel_at = loop.time() + 0.3
    loop.call_at(cancel_at, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - cancel_at < 0.25, f"{loop.time() - cancel_at:.2f} s"
    assert recorder.events()[-1].status == "CANCELLED"


async def test_the_event_loop_is_held_a_few_milliseconds_at_a_time() -> None:
    async with longest_hold(without_old_garbage=True) as hold:
        outcome, _ = await _run(_workflow(HEAVY, timeout_s=1.0), ROWS, RunOptions())
    assert outcome.error is not None and outcome.error.type == "NODE_TIMEOUT"
    # One item's rendering (within the default budget) and a slice, at most.
    assert hold.longest_s < 0.05, f"{hold.longest_s * 1000:.0f} ms"


async def test_an_expression_limit_fails_the_node_naming_node_parameter_and_limit() -> None:
    outcome, elapsed_s = await _run(
        _workflow("{{ ['x'*1000000]*200 }}"), {"rows": [{"n": 1}]}, RunOptions()
    )
    assert outcome.status is ExecutionStatus.FAILED
    error = outcome.error
    assert error is not None and error.type == "EXPRESSION_LIMIT"
    assert "node 'Work' in parameter 'fields[0].value'" in error.message
    assert "expression limit 'value size' exceeded" in error.message
    assert error.details["limit"] == "value size"
    assert error.details["parameter"] == "fields[0].value"
    assert error.details["setting"] == "LOOM_EXPRESSION_MAX_VALUE_SIZE"
    assert elapsed_s < 0.5


async def test_a_stall_is_logged_with_the_execution_id(caplog: pytest.LogCaptureFixture) -> None:
    # Limits raised: one evaluation holds the loop for about 0.2 to 1 s.
    graph = _workflow("{{ len(str($('Start').first().data)) }}")
    options = RunOptions(expression_limits=UNLIMITED)
    data = LONG_TO_MEASURE[:400_000]
    request = _request(graph, {"rows": [{"n": 1}], "data": data}, "stalling-run")
    with caplog.at_level(logging.WARNING, logger="loom.loop"):
        async with monitoring(stall_s=0.1) as monitor:
            outcome = await Executor(MemoryRecorder()).run(request, options)
            await asyncio.sleep(monitor.interval_s * 3)  # a tick after the stall
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert monitor.stalls >= 1
    messages = [record.getMessage() for record in caplog.records]
    stalls = [message for message in messages if "stalled" in message]
    assert any("execution stalling-run, node 'Work'" in message for message in stalls), stalls


async def test_a_stall_is_blamed_on_the_execution_that_held_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One execution waits 10 ms (awaiting, holding nothing) while the other's `set` node
    # holds the loop for 0.2 to 1 s: the waiting one resumes after the stall, before the
    # monitor's tick, having been in its node longer than the stall lasted.
    stalling = _request(
        _workflow("{{ len(str($('Start').first().data)) }}"),
        {"rows": [{"n": 1}], "data": LONG_TO_MEASURE[:400_000]},
        "stalling-run",
    )
    waiting_graph = Graph(
        nodes=(
            Node("start", "Start", "manual_trigger"),
            Node("wait", "Wait", "wait", parameters={"amount": 0.01, "unit": "seconds"}),
        ),
        edges=(Edge("start", "wait"),),
    )
    waiting = _request(waiting_graph, {}, "waiting-run")
    options = RunOptions(expression_limits=UNLIMITED)
    with caplog.at_level(logging.WARNING, logger="loom.loop"):
        async with monitoring(stall_s=0.1) as monitor:
            outcomes = await asyncio.gather(
                Executor(MemoryRecorder()).run(waiting, options),
                Executor(MemoryRecorder()).run(stalling, options),
            )
            await asyncio.sleep(monitor.interval_s * 3)  # a tick after the stall
    assert [outcome.status for outcome in outcomes] == [ExecutionStatus.SUCCEEDED] * 2
    stalls = [record for record in caplog.records if "stalled" in record.getMessage()]
    assert stalls, "no stall logged"
    blamed = [getattr(record, "execution_id", None) for record in stalls]
    assert blamed[0] == "stalling-run", [record.getMessage() for record in stalls]
    assert "waiting-run" not in blamed, [record.getMessage() for record in stalls]
