"""Engine benchmark: per-node overhead, parallel branches, big data, the plan cache.

    .venv/bin/python bench/engine.py [--runs 5] [--quick] [--loop auto|asyncio|uvloop]
    .venv/bin/python bench/engine.py --profile chain-memory|chain-sqlite|fan-out|big-data|plan-cache

The scenarios of issue 3 ("Benchmark"). Each runs in fresh subprocesses (so that memory, caches
and garbage of one cannot slow another) and prints the median of `--runs` runs next to a floor
measured in the same process, in alternation with the figure. The floor calls the node types'
`execute` behaviours directly, in the same order, with the inputs and contexts the executor
would give them: no executor, no recorder, no database.

1. A chain of 1,000 nodes (the trigger and 999 `set` nodes, each writing the expression
   `n = {{ $json.n + 1 }}`), one item: executor overhead per node above the floor, in memory
   (`Executor` + `MemoryRecorder`) and recorded to SQLite (`ExecutionRunner` +
   `DatabaseExecutionSource` + `GroupCommitWriter`: load, claim, cached plan, run, commit).
2. A trigger fanning out to 200 `wait` nodes of 10 ms, joined again, with the per-execution
   concurrency at 200: wall time. `merge` takes one edge per input, so the join is one `noop`
   whose input takes all 200 edges (items concatenated in edge order, which is what `merge`
   does in append mode): one join, so the figure is the parallel branches and not a tree of
   merges. A binary tree of 199 `merge` nodes and the recorded run are printed for reference.
3. 100,000 items of about 1 KB (108.7 MB of JSON) as the execution input, through split_out
   (the trigger emits the input as one item) -> set -> filter (keeps half) -> sort ->
   aggregate (all items), recorded in full by the runner: wall time, and peak RSS of a
   process that only loads, runs and records the execution. The floor runs the same
   behaviours on the same items in a process of its own.
4. The same 10-node workflow run 1,000 times one after the other through the runner, with a
   shared plan cache and with a cache of size 0 (compiled on every run): executions per second,
   on SQLite as in production, and on a source that hands the runner the execution from memory
   with a `MemoryRecorder` (the engine's own share, where the cache's effect shows best).

The full run takes about ten minutes on a 2-core machine (scenario 4 most of it); `--quick`
(2 runs, 10,000 items, 100 executions; the big-data targets are then not judged) about one.

`--profile NAME` runs one scenario's figure again under cProfile (the event loop thread, on the
asyncio loop) and with the CPU time of every thread, and prints where the time goes. Figures
are measured on uvloop when it is installed (`--loop auto`), as `loom serve` runs, and with
the garbage collector tuned as Loom's processes tune it (`LOOM_GC_THRESHOLD`; `0` measures with
Python's default), in the floor's processes too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MEMORY_US = 30.0
TARGET_SQLITE_US = 300.0
TARGET_FAN_OUT_MS = 40.0
TARGET_BIG_DATA_S = 5.0
TARGET_RSS_MB = 800.0
RESULT_PREFIX = "RESULT "
PROFILES = ("chain-memory", "chain-sqlite", "fan-out", "big-data", "plan-cache")


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if loop == "uvloop":
            raise
        return None
    return uvloop.new_event_loop


def child_main(name: str, arguments: dict[str, Any], loop: str) -> None:
    from engine_profile import Profiling, run_profiled
    from engine_scenarios import SCENARIOS

    from server.process import tune_gc
    from server.settings import Settings

    # As `loom serve`, `loom worker` and `loom run` do, in the floor's process as well.
    tune_gc(Settings().gc_threshold)
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        result = runner.run(SCENARIOS[name](**arguments))
        if isinstance(result, Profiling):
            result = {"profile": run_profiled(runner, result)}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def child(name: str, loop: str, **arguments: Any) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter and return its result."""
    command = [sys.executable, __file__, "--child", name, "--loop", loop]
    command += ["--arguments", json.dumps(arguments)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"scenario {name} failed (exit {completed.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], scale: float, spec: str) -> str:
    return ", ".join(format(value * scale, spec) for value in values)


@dataclass(slots=True)
class Row:
    figure: str
    value: str
    floor: str
    delta: str
    target: str
    verdict: str
    profile: str | None = None


def verdict(value: float, target: float, judged: bool = True) -> str:
    if not judged:
        return "n/a"
    return "PASS" if value <= target else "MISS"


def chain(memory: dict[str, Any], sqlite: dict[str, Any]) -> list[Row]:
    nodes = memory["nodes"]
    per_node = 1e6 / nodes
    rows = []
    print(f"1. chain of {nodes} nodes (trigger + {nodes - 1} set, n = {{{{ $json.n + 1 }}}})")
    for label, result, target, profile in (
        ("memory", memory, TARGET_MEMORY_US, "chain-memory"),
        ("SQLite", sqlite, TARGET_SQLITE_US, "chain-sqlite"),
    ):
        overheads = [
            run - floor for run, floor in zip(result["run_s"], result["floor_s"], strict=True)
        ]
        run_us, floor_us = median(result["run_s"]) * per_node, median(result["floor_s"]) * per_node
        overhead_us = median(overheads) * per_node
        print(
            f"   {label:7} {run_us:8.1f} us/node, floor {floor_us:6.1f} us/node, "
            f"overhead {overhead_us:8.1f} us/node (target <= {target:g}); "
            f"runs {spread(result['run_s'], 1000, '.0f')} ms"
        )
        rows.append(
            Row(
                f"1. chain {nodes} set nodes, {label}",
                f"{run_us:.1f} us/node",
                f"{floor_us:.1f} us/node",
                f"+{overhead_us:.1f} us/node",
                f"<= {target:g} us/node",
                verdict(overhead_us, target),
                profile,
            )
        )
    print(
        f"   SQLite: {median(sqlite['commits']):.0f} commit(s) per run; stored per run: "
        f"{sqlite['events']} events, {sqlite['node_runs']} node runs, "
        f"{sqlite['payloads']} payloads"
    )
    return rows


def fan_out(result: dict[str, Any]) -> list[Row]:
    branches = result["branches"]
    floor_ms = median(result["floor_s"]) * 1000
    print(f"2. fan-out: trigger -> {branches} x wait 10 ms -> join, concurrency {branches}")
    print(f"   floor (asyncio.gather of the behaviours): {floor_ms:.1f} ms")
    rows = []
    for key, label, judged in (
        ("junction_s", "join by one noop, memory", True),
        ("tree_s", f"join by {result['merges']} merges, memory", False),
        ("recorded_s", "join by one noop, SQLite via runner", False),
    ):
        value_ms = median(result[key]) * 1000
        print(
            f"   {label:38} {value_ms:7.1f} ms ({value_ms / floor_ms:.2f}x floor); "
            f"runs {spread(result[key], 1000, '.1f')} ms"
        )
        rows.append(
            Row(
                f"2. fan-out {branches} waits, {label}",
                f"{value_ms:.1f} ms",
                f"{floor_ms:.1f} ms",
                f"{value_ms / floor_ms:.2f}x",
                f"<= {TARGET_FAN_OUT_MS:g} ms" if judged else "(info)",
                verdict(value_ms, TARGET_FAN_OUT_MS) if judged else "info",
                "fan-out" if judged else None,
            )
        )
    return rows


def big_data(runs: list[dict[str, Any]], floors: list[dict[str, Any]], items: int) -> list[Row]:
    judged = items == 100_000
    run_s = median([run["run_s"] for run in runs])
    floor_s = median([floor["floor_s"] for floor in floors])
    rss = median([run["rss_peak_mb"] for run in runs])
    floor_rss = median([floor["rss_peak_mb"] for floor in floors])
    first = runs[0]
    print(f"3. {items:,} items, split_out -> set -> filter -> sort -> aggregate, recorded")
    print(
        f"   wall {run_s:.2f} s (runs {spread([run['run_s'] for run in runs], 1, '.2f')}), "
        f"floor {floor_s:.2f} s (runs {spread([floor['floor_s'] for floor in floors], 1, '.2f')})"
    )
    print(
        f"   of which: load {median([run['load_s'] for run in runs]):.2f} s, "
        f"claim {median([run['claim_s'] for run in runs]):.2f} s, "
        f"held back by the writer {median([run['throttled_s'] for run in runs]):.2f} s, "
        f"waiting for the last commit {median([run['final_flush_s'] for run in runs]):.2f} s"
    )
    nodes = ", ".join(
        f"{name} {median([run['node_s'][name] for run in runs]):.2f}" for name in first["node_s"]
    )
    print(f"   node runs as recorded (s): {nodes}")
    print(
        f"   stored: {first['payloads']} payloads, {first['payload_raw_bytes'] / 1e6:.0f} MB "
        f"of JSON, {first['payload_stored_bytes'] / 1e6:.0f} MB compressed, "
        f"{first['events']} events"
    )
    print(
        f"   peak RSS {rss:.0f} MB (runs {spread([run['rss_peak_mb'] for run in runs], 1, '.0f')}; "
        f"{first['rss_before_mb']:.0f} MB before the run); floor "
        f"process {floor_rss:.0f} MB ({floors[0]['rss_start_mb']:.0f} MB before generating, "
        f"{floors[0]['rss_items_mb']:.0f} MB with the items)"
    )
    return [
        Row(
            f"3. {items:,} items, wall time",
            f"{run_s:.2f} s",
            f"{floor_s:.2f} s",
            f"{run_s / floor_s:.1f}x",
            f"<= {TARGET_BIG_DATA_S:g} s",
            verdict(run_s, TARGET_BIG_DATA_S, judged),
            "big-data",
        ),
        Row(
            f"3. {items:,} items, peak RSS",
            f"{rss:.0f} MB",
            f"{floor_rss:.0f} MB",
            f"{rss / floor_rss:.1f}x",
            f"<= {TARGET_RSS_MB:g} MB",
            verdict(rss, TARGET_RSS_MB, judged),
            "big-data",
        ),
    ]


def plan_cache(result: dict[str, Any]) -> list[Row]:
    executions = result["executions"]
    print(f"4. 10-node workflow, {executions:,} executions one after the other via the runner")
    rows = []
    for storage, label in (("sqlite", "SQLite"), ("memory", "no storage")):
        cached = [executions / seconds for seconds in result[f"{storage}_cached_s"]]
        uncached = [executions / seconds for seconds in result[f"{storage}_uncached_s"]]
        ratios = [a / b for a, b in zip(cached, uncached, strict=True)]
        print(
            f"   {label:10}  with the cache {median(cached):7.1f} exec/s "
            f"({1000 / median(cached):5.2f} ms each), without {median(uncached):7.1f} exec/s "
            f"({1000 / median(uncached):5.2f} ms each): {median(ratios):.2f}x; "
            f"ratio per round {spread(ratios, 1, '.2f')}"
        )
        rows.append(
            Row(
                f"4. plan cache, {executions:,} runs, {label}",
                f"{median(cached):.1f} exec/s",
                f"{median(uncached):.1f} exec/s",
                f"{median(ratios):.2f}x",
                "(shows effect)",
                "info",
            )
        )
    print(
        f"   SQLite runner's cache: {result['hits']} hits, {result['misses']} miss; a miss costs "
        f"{result['compile_s'] * 1000:.2f} ms (Graph.from_json + compile_plan), "
        f"a hit {result['hit_s'] * 1e6:.1f} us"
    )
    print(
        "   (no storage: the runner on a source that returns the execution from memory and "
        "a MemoryRecorder, i.e. the engine's share of a run)"
    )
    return rows


def summary(rows: list[Row]) -> None:
    headers = ("figure", "value", "floor / baseline", "overhead / ratio", "target", "verdict")
    table = [headers, *((r.figure, r.value, r.floor, r.delta, r.target, r.verdict) for r in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(headers))]
    print("\nsummary")
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print(("  " + "  ".join(cells)).rstrip())
    missed = {row.profile for row in rows if row.verdict == "MISS" and row.profile}
    for name in sorted(missed):
        print(f"  where the time goes: .venv/bin/python bench/engine.py --profile {name}")


def big_data_run(args: argparse.Namespace, workdir: Path, index: int, profile: bool) -> Any:
    """Queue the execution in one process, run it in a fresh one, then drop the database."""
    database_path = str(workdir / f"big-data-{index}.db")
    setup = child("big-data-setup", args.loop, items=args.items, database_path=database_path)
    result = child(
        "big-data-run",
        args.loop,
        items=args.items,
        database_path=database_path,
        execution_id=setup["execution_id"],
        profile=profile,
    )
    Path(database_path).unlink()
    return result


def big_data_rounds(
    args: argparse.Namespace, workdir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs, floors = [], []
    for index in range(args.runs):
        runs.append(big_data_run(args, workdir, index, profile=False))
        floors.append(child("big-data-floor", args.loop, items=args.items))
    return runs, floors


def profile(args: argparse.Namespace, workdir: Path) -> None:
    name = args.profile
    print(f"profile of {name} ({'quick' if args.quick else 'full'} size), loop {args.loop}")
    if name == "big-data":
        result = big_data_run(args, workdir, 0, profile=True)
    elif name == "chain-memory":
        result = child(name, args.loop, runs=args.runs, nodes=args.nodes, profile=True)
    elif name == "chain-sqlite":
        arguments = {"runs": args.runs, "nodes": args.nodes, "workdir": str(workdir)}
        result = child(name, args.loop, **arguments, profile=True)
    elif name == "fan-out":
        arguments = {"runs": args.runs * 4, "branches": args.branches, "workdir": str(workdir)}
        result = child(name, args.loop, **arguments, profile=True)
    else:
        arguments = {"runs": 1, "executions": args.executions, "workdir": str(workdir)}
        result = child(name, args.loop, **arguments, profile=True)
    print(result["profile"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer runs, 10,000 items")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--profile", choices=PROFILES)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--arguments", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, json.loads(args.arguments), args.loop)
        return
    if args.quick:
        args.runs, args.items, args.executions = min(args.runs, 2), 10_000, 100
    if args.loop == "auto":
        # cProfile loses track of time spent inside uvloop's C loop; profile on asyncio's.
        uvloop = loop_factory("auto") is not None and not args.profile
        args.loop = "uvloop" if uvloop else "asyncio"

    workdir = Path(tempfile.mkdtemp(prefix="loom-bench-engine-"))
    try:
        if args.profile:
            profile(args, workdir)
            return
        started = time.monotonic()
        print(
            f"engine: Python {platform.python_version()}, {args.loop} loop, "
            f"{os.cpu_count()} CPUs, {args.runs} runs per figure (median)"
        )
        rows = chain(
            child("chain-memory", args.loop, runs=args.runs, nodes=args.nodes),
            child(
                "chain-sqlite", args.loop, runs=args.runs, nodes=args.nodes, workdir=str(workdir)
            ),
        )
        rows += fan_out(
            child(
                "fan-out",
                args.loop,
                runs=args.runs,
                branches=args.branches,
                workdir=str(workdir),
            )
        )
        rows += big_data(*big_data_rounds(args, workdir), items=args.items)
        rows += plan_cache(
            child(
                "plan-cache",
                args.loop,
                runs=args.runs,
                executions=args.executions,
                workdir=str(workdir),
            )
        )
        summary(rows)
        print(f"  ({time.monotonic() - started:.0f} s in all)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
