"""The scenarios of `bench/engine.py`, each run in a subprocess of its own.

Every scenario returns a JSON-able dict of raw timings (seconds) that the parent process
summarises. Recorded runs go through the production path: `ExecutionRunner` with
`DatabaseExecutionSource` and one `GroupCommitWriter` on a SQLite file, on executions queued
by `storage.executions.create_execution` exactly as `executeWorkflow` queues them.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from engine_profile import ProfileTarget, Profiling
from engine_storage import (
    MemorySource,
    TimedRecorder,
    TimedSource,
    open_database,
    queue,
    recording,
    seed,
    stored_counts,
)
from engine_workloads import (
    TEN_NODE_INPUT,
    bench_info,
    big_data_graph,
    chain_graph,
    fan_out_floor,
    fan_out_graph,
    linear_floor,
    make_items,
    merge_tree_graph,
    ten_node_graph,
)
from sqlmodel import col, select

from engine.executor import Executor, Outcome, RunOptions, RunRequest
from engine.graph import Graph
from engine.memory_recorder import MemoryRecorder
from engine.node_types import load_registry
from engine.nodes.base import Item
from engine.plan import Plan, PlanCache, compile_plan
from engine.runner import ExecutionRunner
from engine.states import ExecutionStatus
from storage.execution_source import DatabaseExecutionSource
from storage.models import NodeRun
from storage.recorder import GroupCommitWriter

Result = dict[str, Any]
Scenario = Result | Profiling  # timings, or in profile mode what to profile


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def timed(operation: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Wall time of one awaited operation, after a full collection so that garbage left by
    the previous one is not charged to it."""
    gc.collect()
    started = time.perf_counter()
    value = await operation()
    return time.perf_counter() - started, value


def check_output(outcome: Outcome | None, check: Callable[[list[Item]], bool]) -> None:
    if outcome is None or outcome.status is not ExecutionStatus.SUCCEEDED:
        raise RuntimeError(f"the benchmark execution did not succeed: {outcome}")
    if not check(outcome.output or []):
        raise RuntimeError(f"unexpected output: {str(outcome.output)[:200]}")


def run_in_memory(plan: Plan, item: Item, max_concurrency: int = 16) -> Awaitable[Outcome]:
    request = RunRequest(execution_id="bench", plan=plan, info=bench_info(), input=item)
    return Executor(MemoryRecorder()).run(request, RunOptions(max_concurrency=max_concurrency))


# Scenario 1: a chain of set nodes


async def chain_memory(runs: int, nodes: int, profile: bool = False) -> Scenario:
    plan = compile_plan("chain", chain_graph(nodes), load_registry())
    expected = [{"n": nodes - 1}]

    async def executor_run() -> Outcome:
        outcome = await run_in_memory(plan, {"n": 0})
        check_output(outcome, lambda output: output == expected)
        return outcome

    await linear_floor(plan, {"n": 0})
    await executor_run()
    if profile:
        return Profiling([ProfileTarget("executor, MemoryRecorder", runs, executor_run)])
    floor_s, run_s = [], []
    for _ in range(runs):
        elapsed, output = await timed(lambda: linear_floor(plan, {"n": 0}))
        assert output == expected, output
        floor_s.append(elapsed)
        run_s.append((await timed(executor_run))[0])
    return {"nodes": nodes, "floor_s": floor_s, "run_s": run_s}


async def chain_sqlite(runs: int, nodes: int, workdir: str, profile: bool = False) -> Scenario:
    registry = load_registry()
    graph = chain_graph(nodes)
    plan = compile_plan("chain", graph, registry)
    expected = [{"n": nodes - 1}]
    database = await open_database(Path(workdir) / "chain.db")
    execution_ids = await queue(database, await seed(database, graph, "chain"), runs + 1, {"n": 0})
    setup = await recording(database, registry, plan_cache=PlanCache())
    pending = iter(execution_ids)

    async def runner_run() -> Outcome | None:
        outcome = await setup.runner.run(next(pending))
        check_output(outcome, lambda output: output == expected)
        return outcome

    await linear_floor(plan, {"n": 0})
    await runner_run()  # compiles the plan into the cache, as the first run in production
    if profile:
        return Profiling([ProfileTarget("runner, SQLite", runs, runner_run)], setup.close)
    floor_s, run_s, commits = [], [], []
    for _ in range(runs):
        floor_s.append((await timed(lambda: linear_floor(plan, {"n": 0})))[0])
        rounds = setup.writer.rounds
        run_s.append((await timed(runner_run))[0])
        commits.append(setup.writer.rounds - rounds)
    stored = await stored_counts(database, execution_ids[-1])
    await setup.close()
    return {"nodes": nodes, "floor_s": floor_s, "run_s": run_s, "commits": commits, **stored}


# Scenario 2: fan-out to parallel waits


async def fan_out(runs: int, branches: int, workdir: str, profile: bool = False) -> Scenario:
    registry = load_registry()
    graph = fan_out_graph(branches)
    junction = compile_plan("fan-out", graph, registry)
    tree = compile_plan("merge-tree", merge_tree_graph(branches), registry)
    database = await open_database(Path(workdir) / "fan-out.db")
    seeded = await seed(database, graph, "fan-out")
    execution_ids = iter(await queue(database, seeded, runs + 1, {}))
    setup = await recording(database, registry, plan_cache=PlanCache(), max_concurrency=branches)

    def all_branches(output: list[Item]) -> bool:
        return len(output) == branches

    async def memory(plan: Plan) -> Outcome:
        outcome = await run_in_memory(plan, {}, max_concurrency=branches)
        check_output(outcome, all_branches)
        return outcome

    async def recorded() -> Outcome | None:
        outcome = await setup.runner.run(next(execution_ids))
        check_output(outcome, all_branches)
        return outcome

    await fan_out_floor(junction, {})
    await memory(junction)
    await memory(tree)
    await recorded()
    if profile:
        target = ProfileTarget("join by one noop, memory", runs, lambda: memory(junction))
        return Profiling([target], setup.close)
    floor_s, junction_s, tree_s, recorded_s = [], [], [], []
    for _ in range(runs):
        elapsed, output = await timed(lambda: fan_out_floor(junction, {}))
        assert len(output) == branches
        floor_s.append(elapsed)
        junction_s.append((await timed(lambda: memory(junction)))[0])
        tree_s.append((await timed(lambda: memory(tree)))[0])
        recorded_s.append((await timed(recorded))[0])
    await setup.close()
    return {
        "branches": branches,
        "merges": len(tree.nodes) - branches - 1,
        "floor_s": floor_s,
        "junction_s": junction_s,
        "tree_s": tree_s,
        "recorded_s": recorded_s,
    }


# Scenario 3: 100,000 items of 1 KB, recorded in full


async def big_data_setup(items: int, database_path: str) -> Result:
    """A database holding one QUEUED execution whose input is `{"items": [...]}`."""
    database = await open_database(Path(database_path))
    seeded = await seed(database, big_data_graph(), "big data")
    data = make_items(items)
    (execution_id,) = await queue(database, seeded, 1, {"items": data})
    await database.dispose()
    return {"execution_id": execution_id}


def _kept_and_sorted(output: list[Item], items: int) -> bool:
    data = output[0]["data"] if len(output) == 1 else []
    totals = [item["total"] for item in data]
    return len(data) == items // 2 and totals == sorted(totals, reverse=True)


async def big_data_run(
    items: int, database_path: str, execution_id: str, profile: bool = False
) -> Scenario:
    """The runner loads, runs and records the queued execution; this process does nothing
    else, so its peak RSS is that of a worker running it."""
    registry = load_registry()
    database = await open_database(Path(database_path), migrate=False)
    setup = await recording(database, registry, plan_cache=PlanCache(), timed_parts=True)
    rss_before = peak_rss_mb()

    async def runner_run() -> Outcome | None:
        outcome = await setup.runner.run(execution_id)
        check_output(outcome, lambda output: _kept_and_sorted(output, items))
        return outcome

    if profile:
        return Profiling([ProfileTarget("runner, SQLite", 1, runner_run)], setup.close)
    elapsed, _ = await timed(runner_run)
    rss_peak = peak_rss_mb()
    source, recorder = setup.runner.source, setup.runner.recorder
    assert isinstance(source, TimedSource) and isinstance(recorder, TimedRecorder)
    async with database.session() as session:
        rows = await session.exec(select(NodeRun).where(col(NodeRun.execution_id) == execution_id))
        node_s = {
            run.node_name: (run.finished_at - run.started_at).total_seconds()
            for run in rows
            if run.started_at is not None and run.finished_at is not None
        }
    stored = await stored_counts(database, execution_id)
    await setup.close()
    return {
        "run_s": elapsed,
        "load_s": source.load_s,
        "claim_s": source.claim_s,
        "final_flush_s": recorder.flush_s,
        "throttled_s": recorder.throttle_s,
        "node_s": node_s,
        "rss_before_mb": rss_before,
        "rss_peak_mb": rss_peak,
        **stored,
    }


async def big_data_floor(items: int) -> Result:
    """The same behaviours on the same items, generated in this process: no storage."""
    plan = compile_plan("big data", big_data_graph(), load_registry())
    rss_start = peak_rss_mb()
    data = make_items(items)
    rss_items = peak_rss_mb()
    elapsed, output = await timed(lambda: linear_floor(plan, {"items": data}))
    assert _kept_and_sorted(output, items)
    return {
        "floor_s": elapsed,
        "rss_start_mb": rss_start,
        "rss_items_mb": rss_items,
        "rss_peak_mb": peak_rss_mb(),
    }


# Scenario 4: the plan cache


async def plan_cache(runs: int, executions: int, workdir: str, profile: bool = False) -> Scenario:
    """Runners with a shared cache and with a cache of size 0 (compiling on every run), on
    SQLite as in production, and on a storage-less source to show the engine's own share."""
    registry = load_registry()
    graph = ten_node_graph()
    database = await open_database(Path(workdir) / "plan-cache.db")
    seeded = await seed(database, graph, "ten nodes")
    warm_up = 20
    total = 2 * warm_up + (runs * 2 if not profile else 2) * executions
    queued = iter(await queue(database, seeded, total, TEN_NODE_INPUT))
    recorded = await recording(database, registry, plan_cache=PlanCache())
    memory = MemoryRecorder()
    # The same writer for both SQLite runners: one writer per process, as in production.
    runners = {
        "sqlite_cached": recorded.runner,
        "sqlite_uncached": ExecutionRunner(
            DatabaseExecutionSource(database, GroupCommitWriter(database)),
            recorded.writer,
            registry,
            plan_cache=PlanCache(0),
        ),
        "memory_cached": ExecutionRunner(
            MemorySource(seeded), memory, registry, plan_cache=PlanCache()
        ),
        "memory_uncached": ExecutionRunner(
            MemorySource(seeded), memory, registry, plan_cache=PlanCache(0)
        ),
    }

    async def run_many(name: str, count: int) -> None:
        memory.records.clear()
        runner, outcome = runners[name], None
        for index in range(count):
            execution_id = next(queued) if name.startswith("sqlite") else f"memory-{index}"
            outcome = await runner.run(execution_id)
        check_output(outcome, lambda output: output == [{"total": [120]}])

    for name in runners:
        await run_many(name, warm_up)
    if profile:
        targets = [
            ProfileTarget(
                f"{executions} executions, {name}", 1, partial(run_many, name, executions)
            )
            for name in ("sqlite_cached", "sqlite_uncached")
        ]
        return Profiling(targets, recorded.close)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(runs):
        order = list(runners) if round_index % 2 == 0 else list(reversed(runners))
        for name in order:
            seconds[name].append((await timed(partial(run_many, name, executions)))[0])
    cache = recorded.runner.plan_cache
    await recorded.close()

    # The cost the cache removes, measured on its own: what the runner does on a miss.
    version_id = seeded.snapshot.id
    nodes, edges = seeded.snapshot.nodes, seeded.snapshot.edges
    compile_s = []
    for _ in range(50):
        started = time.perf_counter()
        compile_plan(version_id, Graph.from_json(nodes, edges), registry)
        compile_s.append(time.perf_counter() - started)
    hit_s = []
    for _ in range(50):
        started = time.perf_counter()
        cache.get(version_id, lambda: compile_plan(version_id, graph, registry))
        hit_s.append(time.perf_counter() - started)
    return {
        "executions": executions,
        **{f"{name}_s": values for name, values in seconds.items()},
        "hits": cache.hits,
        "misses": cache.misses,
        "compile_s": statistics.median(compile_s),
        "hit_s": statistics.median(hit_s),
    }


SCENARIOS: dict[str, Callable[..., Coroutine[Any, Any, Scenario]]] = {
    "chain-memory": chain_memory,
    "chain-sqlite": chain_sqlite,
    "fan-out": fan_out,
    "big-data-setup": big_data_setup,
    "big-data-run": big_data_run,
    "big-data-floor": big_data_floor,
    "plan-cache": plan_cache,
}
