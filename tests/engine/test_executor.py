"""The executor on custom node types: data flow, skips, concurrency, retries, errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.events import EventType
from engine.executor import Executor, RunOptions, RunRequest
from engine.graph import Edge, Graph, Node, OnError, RetryPolicy
from engine.memory_recorder import MemoryRecorder
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, Port
from engine.nodes.base import NodeError, NodeRunContext, PortItems, RunInfo
from engine.plan import PlanError, compile_plan
from engine.states import ExecutionStatus, NodeRunStatus
from tests.polling import until

CALLS: dict[str, int] = {}


async def _trigger(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    return {"main": inputs.get("main", [])}


async def _tag(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    label = ctx.parameters().get("label", ctx.node.name)
    return {"main": [{**item, "path": [*item.get("path", []), label]} for item in inputs["main"]]}


async def _branch(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    items = inputs["main"]
    return {
        "true": [item for item in items if item.get("flag")],
        "false": [item for item in items if not item.get("flag")],
    }


async def _sleep(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    await ctx.sleep(float(ctx.parameters().get("seconds", 0.01)))
    return {"main": inputs["main"]}


async def _flaky(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    key = ctx.node.id
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] < int(ctx.parameters().get("succeed_on", 99)):
        raise NodeError("temporary", error_type="FLAKY", retryable=True)
    return {"main": inputs["main"]}


async def _boom(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    raise ValueError("kaboom")


async def _bad_output(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    return {"main": [{"when": object()}]}


async def _collect(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    return {"main": [{"ports": {port: len(items) for port, items in sorted(inputs.items())}}]}


def _type(
    name: str, behaviour: Any, *, inputs=("main",), outputs=("main",), group=NodeGroup.ACTION
):
    return NodeType(
        name=name,
        version=1,
        display_name=name,
        description=name,
        group=group,
        inputs=tuple(Port(port) for port in inputs),
        outputs=tuple(Port(port) for port in outputs),
        parameters_schema={"type": "object"},
        execute=behaviour,
    )


REGISTRY = NodeTypeRegistry(
    [
        _type("start", _trigger, inputs=(), group=NodeGroup.TRIGGER),
        _type("tag", _tag),
        _type("branch", _branch, outputs=("true", "false")),
        _type("sleep", _sleep),
        _type("flaky", _flaky),
        _type("boom", _boom),
        _type("bad_output", _bad_output),
        _type("collect", _collect, inputs=("a", "b")),
    ]
)


def graph(nodes: list[Node], edges: list[tuple[str, str] | Edge]) -> Graph:
    return Graph(
        nodes=tuple(nodes),
        edges=tuple(e if isinstance(e, Edge) else Edge(source=e[0], target=e[1]) for e in edges),
    )


async def run(g: Graph, *, input: dict | None = None, options: RunOptions | None = None):
    recorder = MemoryRecorder()
    plan = compile_plan("v1", g, REGISTRY)
    request = RunRequest(
        execution_id="e1", plan=plan, info=RunInfo(execution_id="e1"), input=input or {}
    )
    outcome = await Executor(recorder).run(request, options)
    return outcome, recorder


def started(recorder: MemoryRecorder) -> set[str]:
    """The nodes that began running (the test then knows they are inside their sleep)."""
    return {e.node_id for e in recorder.events() if e.type is EventType.NODE_STARTED}


def statuses(outcome) -> dict[str, str]:
    return {node_id: state.status.value for node_id, state in outcome.node_runs.items()}


async def test_linear_chain_passes_items_and_records_every_transition() -> None:
    g = graph(
        [Node("s", "Start", "start"), Node("a", "A", "tag"), Node("b", "B", "tag")],
        [("s", "a"), ("a", "b")],
    )
    outcome, recorder = await run(g, input={"x": 1})
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.output == [{"x": 1, "path": ["A", "B"]}]
    events = recorder.events()
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        EventType.EXECUTION_STARTED,
        EventType.NODE_STARTED,
        EventType.NODE_SUCCEEDED,
        EventType.NODE_STARTED,
        EventType.NODE_SUCCEEDED,
        EventType.NODE_STARTED,
        EventType.NODE_SUCCEEDED,
        EventType.EXECUTION_FINISHED,
    ]
    assert events[-1].status == "SUCCEEDED"


async def test_untaken_branch_is_skipped_and_merge_port_concatenates_in_edge_order() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("if", "If", "branch"),
            Node("t", "T", "tag"),
            Node("f", "F", "tag"),
            Node("after_f", "AfterF", "tag"),
            Node("j", "Join", "tag"),
        ],
        [
            ("s", "if"),
            Edge("if", "t", source_output="true"),
            Edge("if", "f", source_output="false"),
            ("f", "after_f"),
            ("after_f", "j"),
            ("t", "j"),
        ],
    )
    outcome, _ = await run(g, input={"flag": True})
    assert statuses(outcome) == {
        "s": "SUCCEEDED",
        "if": "SUCCEEDED",
        "t": "SUCCEEDED",
        "f": "SKIPPED",
        "after_f": "SKIPPED",
        "j": "SUCCEEDED",
    }
    assert outcome.output == [{"flag": True, "path": ["T", "Join"]}]


async def test_several_edges_into_one_port_concatenate_in_edge_order_not_completion_order() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("slow", "Slow", "sleep", parameters={"seconds": 0.05}),
            Node("fast", "Fast", "tag"),
            Node("j", "Join", "tag", parameters={"label": "J"}),
        ],
        [("s", "slow"), ("s", "fast"), ("slow", "j"), ("fast", "j")],
    )
    outcome, _ = await run(g, input={"n": 1})
    assert outcome.output == [{"n": 1, "path": ["J"]}, {"n": 1, "path": ["Fast", "J"]}]


async def test_parallel_branches_run_concurrently() -> None:
    nodes = [Node("s", "Start", "start")]
    nodes += [Node(f"w{i}", f"W{i}", "sleep", parameters={"seconds": 0.05}) for i in range(20)]
    g = graph(nodes, [("s", f"w{i}") for i in range(20)])
    started = time.perf_counter()
    outcome, _ = await run(g, options=RunOptions(max_concurrency=20))
    elapsed = time.perf_counter() - started
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert elapsed < 0.5, elapsed  # 20 x 50 ms one after another would take a second


async def test_retry_then_success_records_each_attempt() -> None:
    CALLS.clear()
    retry = RetryPolicy(max_attempts=3, backoff_s=0.001, max_backoff_s=0.01)
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("r", "R", "flaky", parameters={"succeed_on": 3}, retry=retry),
        ],
        [("s", "r")],
    )
    outcome, recorder = await run(g)
    assert outcome.status is ExecutionStatus.SUCCEEDED
    kinds = [e.type for e in recorder.events() if e.node_id == "r"]
    assert kinds == [
        EventType.NODE_STARTED,
        EventType.NODE_RETRYING,
        EventType.NODE_STARTED,
        EventType.NODE_RETRYING,
        EventType.NODE_STARTED,
        EventType.NODE_SUCCEEDED,
    ]
    assert outcome.node_runs["r"].attempt == 3


async def test_stop_fails_the_execution_and_cancels_the_rest() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("b", "Boom", "boom"),
            Node("slow", "Slow", "sleep", parameters={"seconds": 5}),
            Node("after", "After", "tag"),
        ],
        [("s", "b"), ("s", "slow"), ("b", "after")],
    )
    started = time.perf_counter()
    outcome, _ = await run(g)
    assert time.perf_counter() - started < 1
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_CRASHED"
    assert "Boom" in outcome.error.message and "kaboom" in outcome.error.message
    assert statuses(outcome) == {
        "s": "SUCCEEDED",
        "b": "FAILED",
        "slow": "CANCELLED",
        "after": "CANCELLED",
    }


@pytest.mark.parametrize("on_error", [OnError.CONTINUE, OnError.ERROR_OUTPUT])
async def test_continue_and_error_output_route_the_error_as_an_item(on_error: OnError) -> None:
    port = "error" if on_error is OnError.ERROR_OUTPUT else "main"
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("b", "Boom", "boom", on_error=on_error),
            Node("h", "Handle", "tag"),
        ],
        [("s", "b"), Edge("b", "h", source_output=port)],
    )
    outcome, _ = await run(g)
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.node_runs["b"].status is NodeRunStatus.FAILED
    assert outcome.output is not None
    assert outcome.output[0]["error"]["type"] == "NODE_CRASHED"
    assert outcome.output[0]["path"] == ["Handle"]


async def test_retries_happen_before_on_error_applies() -> None:
    CALLS.clear()
    retry = RetryPolicy(max_attempts=2, backoff_s=0.001, max_backoff_s=0.01)
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("r", "R", "flaky", retry=retry, on_error=OnError.CONTINUE),
            Node("h", "Handle", "tag"),
        ],
        [("s", "r"), ("r", "h")],
    )
    outcome, _ = await run(g)
    assert CALLS["r"] == 2
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.output is not None and outcome.output[0]["error"]["type"] == "FLAKY"


async def test_node_timeout_is_retryable_and_reported() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("w", "Wait", "sleep", parameters={"seconds": 5}, timeout_s=0.05),
        ],
        [("s", "w")],
    )
    outcome, _ = await run(g)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "NODE_TIMEOUT"


async def test_non_json_output_is_a_typed_error() -> None:
    g = graph([Node("s", "Start", "start"), Node("x", "X", "bad_output")], [("s", "x")])
    outcome, _ = await run(g)
    assert outcome.error is not None and outcome.error.type == "NODE_OUTPUT_INVALID"


async def test_execution_timeout_fails_and_cancels() -> None:
    g = graph(
        [Node("s", "Start", "start"), Node("w", "Wait", "sleep", parameters={"seconds": 5})],
        [("s", "w")],
    )
    outcome, _ = await run(g, options=RunOptions(execution_timeout_s=0.05))
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and outcome.error.type == "EXECUTION_TIMEOUT"
    assert statuses(outcome)["w"] == "CANCELLED"


async def test_cancelling_the_run_records_cancellation_quickly() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("w", "Wait", "sleep", parameters={"seconds": 5}),
            Node("after", "After", "tag"),
        ],
        [("s", "w"), ("w", "after")],
    )
    recorder = MemoryRecorder()
    plan = compile_plan("v1", g, REGISTRY)
    request = RunRequest(execution_id="e1", plan=plan, info=RunInfo())
    task = asyncio.create_task(Executor(recorder).run(request))
    await until(lambda: "w" in started(recorder))
    cancelled_at = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - cancelled_at < 0.25
    events = recorder.events()
    assert events[-1].type is EventType.EXECUTION_FINISHED and events[-1].status == "CANCELLED"
    cancelled = {e.node_id for e in events if e.type is EventType.NODE_CANCELLED}
    assert cancelled == {"w", "after"}


async def test_expressions_read_earlier_nodes_and_skipped_ancestors_give_empty_lists() -> None:
    label = '{{ $("Start").first().name }}-{{ $("F").all().length }}'
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("if", "If", "branch"),
            Node("f", "F", "tag"),
            Node("t", "T", "tag", parameters={"label": label}),
        ],
        [
            ("s", "if"),
            Edge("if", "t", source_output="true"),
            Edge("if", "f", source_output="false"),
            ("f", "t"),
        ],
    )
    outcome, _ = await run(g, input={"flag": True, "name": "ann"})
    assert outcome.node_runs["f"].status is NodeRunStatus.SKIPPED
    assert outcome.output == [{"flag": True, "name": "ann", "path": ["ann-0"]}]


async def test_references_to_nodes_that_do_not_run_before_are_refused() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("a", "A", "tag"),
            Node("b", "B", "tag", parameters={"label": '{{ $("A").first().x }}'}),
        ],
        [("s", "a"), ("s", "b")],
    )
    with pytest.raises(PlanError) as caught:
        compile_plan("v1", g, REGISTRY)
    (problem,) = caught.value.problems
    assert problem.code == "INVALID_NODE_REFERENCE" and problem.node_id == "b"


async def test_expression_errors_name_node_parameter_and_expression() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("t", "T", "tag", parameters={"label": "{{ $json.a.b }}"}),
        ],
        [("s", "t")],
    )
    outcome, _ = await run(g)
    assert outcome.error is not None
    assert outcome.error.type == "EXPRESSION_ERROR"
    assert "'T'" in outcome.error.message
    assert "label" in outcome.error.message
    assert "$json.a.b" in outcome.error.message


async def test_reused_outputs_are_not_run_again() -> None:
    CALLS.clear()
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("r", "R", "flaky", parameters={"succeed_on": 1}),
            Node("t", "T", "tag"),
        ],
        [("s", "r"), ("r", "t")],
    )
    plan = compile_plan("v1", g, REGISTRY)
    recorder = MemoryRecorder()
    request = RunRequest(
        execution_id="e1",
        plan=plan,
        info=RunInfo(),
        reuse={"s": {"main": [{"x": 1}]}, "r": {"main": [{"x": 2}]}},
    )
    outcome = await Executor(recorder).run(request)
    assert CALLS == {}
    assert outcome.output == [{"x": 2, "path": ["T"]}]
    assert set(outcome.node_runs) == {"t"}


async def test_disabled_node_passes_items_through() -> None:
    g = graph(
        [
            Node("s", "Start", "start"),
            Node("b", "Boom", "boom", disabled=True),
            Node("t", "T", "tag"),
        ],
        [("s", "b"), ("b", "t")],
    )
    outcome, _ = await run(g, input={"x": 1})
    assert outcome.status is ExecutionStatus.SUCCEEDED
    assert outcome.output == [{"x": 1, "path": ["T"]}]


async def test_node_with_two_ports_receives_only_ports_with_data() -> None:
    g = graph(
        [Node("s", "Start", "start"), Node("if", "If", "branch"), Node("c", "C", "collect")],
        [
            ("s", "if"),
            Edge("if", "c", source_output="true", target_input="a"),
            Edge("if", "c", source_output="false", target_input="b"),
        ],
    )
    outcome, _ = await run(g, input={"flag": False})
    assert outcome.output == [{"ports": {"b": 1}}]


async def test_a_node_waiting_between_retries_ends_cancelled_when_the_run_stops() -> None:
    CALLS.clear()
    retry = RetryPolicy(max_attempts=5, backoff_s=5, max_backoff_s=5)
    g = graph(
        [Node("s", "Start", "start"), Node("r", "R", "flaky", retry=retry)],
        [("s", "r")],
    )
    outcome, recorder = await run(g, options=RunOptions(execution_timeout_s=0.1))
    assert outcome.error is not None and outcome.error.type == "EXECUTION_TIMEOUT"
    kinds = [(e.type, e.attempt) for e in recorder.events() if e.node_id == "r"]
    assert kinds == [
        (EventType.NODE_STARTED, 1),
        (EventType.NODE_RETRYING, 1),
        (EventType.NODE_CANCELLED, 2),
    ]


async def test_a_missing_start_node_records_nothing() -> None:
    from engine.executor import StartNodeError

    g = graph([Node("s", "Start", "start")], [])
    recorder = MemoryRecorder()
    request = RunRequest(
        execution_id="e1", plan=compile_plan("v1", g, REGISTRY), info=RunInfo(), start_node_id="x"
    )
    with pytest.raises(StartNodeError):
        await Executor(recorder).run(request)
    assert recorder.records == []


@pytest.mark.parametrize("parallel", [False, True])
async def test_shutdown_interrupts_without_cancelling(parallel: bool) -> None:
    from engine.executor import SHUTDOWN

    nodes = [Node("s", "Start", "start"), Node("w", "Wait", "sleep", parameters={"seconds": 5})]
    edges: list[tuple[str, str] | Edge] = [("s", "w")]
    if parallel:  # two running nodes: they run as tasks, not inline
        nodes.append(Node("w2", "Wait 2", "sleep", parameters={"seconds": 5}))
        edges.append(("s", "w2"))
    recorder = MemoryRecorder()
    request = RunRequest(
        execution_id="e1", plan=compile_plan("v1", graph(nodes, edges), REGISTRY), info=RunInfo()
    )
    task = asyncio.create_task(Executor(recorder).run(request))
    await until(lambda: {"w", "w2"} & started(recorder) == ({"w", "w2"} if parallel else {"w"}))
    task.cancel(SHUTDOWN)
    with pytest.raises(asyncio.CancelledError):
        await task
    events = recorder.events()
    assert all(e.type is not EventType.EXECUTION_FINISHED for e in events)
    lost = [e for e in events if e.type is EventType.NODE_FAILED]
    assert {e.node_id for e in lost} == ({"w", "w2"} if parallel else {"w"})
    assert all(e.error is not None and e.error.type == "WORKER_LOST" for e in lost)


async def _fail_together(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    await asyncio.sleep(0)  # every branch starts before any of them fails
    raise NodeError("the target is down", error_type="CONNECTION_FAILED")


@pytest.mark.parametrize("retry", [None, RetryPolicy(max_attempts=1)])
async def test_parallel_nodes_failing_together_record_only_the_attempts_that_ran(
    retry: RetryPolicy | None,
) -> None:
    registry = NodeTypeRegistry([*REGISTRY.all(), _type("down", _fail_together)])
    g = graph(
        [Node("s", "Start", "start")]
        + [Node(f"h{i}", f"H{i}", "down", retry=retry) for i in range(3)]
        + [Node("after", "After", "tag")],
        [("s", "h0"), ("s", "h1"), ("s", "h2"), ("h0", "after")],
    )
    recorder = MemoryRecorder()
    request = RunRequest(
        execution_id="e1",
        plan=compile_plan("v1", g, registry),
        info=RunInfo(execution_id="e1"),
        input={},
    )
    outcome = await Executor(recorder).run(request)
    assert outcome.status is ExecutionStatus.FAILED
    for node_id in ("h0", "h1", "h2"):
        kinds = [(e.type, e.attempt) for e in recorder.events() if e.node_id == node_id]
        assert kinds == [(EventType.NODE_STARTED, 1), (EventType.NODE_FAILED, 1)], node_id
        assert outcome.node_runs[node_id].attempt == 1
    assert statuses(outcome)["after"] == "CANCELLED"
