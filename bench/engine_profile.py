"""Where a scenario's time goes, for `bench/engine.py --profile`.

A scenario in profile mode hands back `Profiling`: operations that `run_profiled` runs under
the profiler, each from outside the event loop: on Python 3.11 a profiler switched on from
inside a running loop misses much of what the loop runs afterwards.

Two views of the same interval:

- CPU time of every thread of the process, read from `/proc/self/task/*/stat`: the event loop,
  aiosqlite's connection thread (SQLite runs there, outside the GIL), the threads that
  compress large payloads. Exact, whatever runs in C.
- cProfile of the event loop thread, where all of Loom's code runs: self time per function
  (C functions such as `orjson.dumps` or `sqlite3` calls are listed on their own) and, for
  Loom's functions, time including callees. Inclusive times of coroutines count only the
  time they run, not the time they wait; SQLAlchemy runs statements in greenlets, which
  cProfile follows less well, so its inclusive figures are approximate (self times are not).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = str(Path(__file__).resolve().parent.parent) + "/"
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")

Key = tuple[str, int, str]  # cProfile's (file, line, function)


def _thread_cpu_s() -> dict[int, float]:
    """User + system CPU seconds of each thread of this process, by native thread id."""
    times: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        # After the command name: state is field 3 of stat(5), utime 14 and stime 15.
        times[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
    return times


def _label(key: Key) -> str:
    filename, line, function = key
    if filename == "~":
        return function  # a built-in or C function: "<method 'execute' of ...>"
    if filename.startswith(ROOT):
        return f"{filename[len(ROOT) :]}:{function}"
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in filename:
            return f"{filename.split(marker, 1)[1]}:{line}:{function}"
    return f"{filename}:{line}:{function}"


class ThreadProfile:
    """Use as a context manager around the code to profile, then call `report()`."""

    def __init__(self) -> None:
        self.profiler = cProfile.Profile()
        self.elapsed_s = 0.0
        self.cpu_s: dict[str, float] = {}

    def __enter__(self) -> ThreadProfile:
        self._cpu_before = _thread_cpu_s()
        self._started = time.perf_counter()
        self.profiler.enable()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.profiler.disable()
        self.elapsed_s = time.perf_counter() - self._started
        after = _thread_cpu_s()
        names = {thread.native_id: thread.name for thread in threading.enumerate()}
        main = threading.main_thread().native_id
        for tid, seconds in after.items():
            used = seconds - self._cpu_before.get(tid, 0.0)
            if used <= 0:
                continue
            name = "event loop (main thread)" if tid == main else names.get(tid, f"thread {tid}")
            if "_connection_worker_thread" in name:
                name = "aiosqlite connection thread (SQLite)"
            elif name.startswith(("asyncio_", "ThreadPoolExecutor")):
                name = "asyncio.to_thread pool (payload compression)"
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + used

    def report(self, top: int = 25) -> str:
        wall = self.elapsed_s
        lines = [f"  wall time {wall:.2f} s; CPU time by thread (share of wall time):"]
        for name, seconds in sorted(self.cpu_s.items(), key=lambda entry: -entry[1]):
            lines.append(f"    {seconds:7.2f} s  {seconds / wall:6.1%}  {name}")
        stats = pstats.Stats(self.profiler)
        entries = stats.stats  # type: ignore[attr-defined]
        total = sum(tottime for (_, _, tottime, _, _) in entries.values())
        lines.append(
            f"  event loop thread, cProfile ({total:.2f} s profiled; % of that), "
            "self time per function:"
        )
        by_self = sorted(entries.items(), key=lambda entry: -entry[1][2])
        for key, (_, calls, tottime, _, _) in by_self[:top]:
            lines.append(f"    {tottime / total:6.1%}  {calls:9d} calls  {_label(key)}")
        lines.append("  Loom functions including callees:")
        loom = [
            (key, value)
            for key, value in entries.items()
            if key[0].startswith(ROOT) and "/bench/" not in key[0]
        ]
        loom.sort(key=lambda entry: -entry[1][3])
        for key, (_, calls, _, cumtime, _) in loom[:top]:
            lines.append(f"    {cumtime / total:6.1%}  {calls:9d} calls  {_label(key)}")
        return "\n".join(lines)


@dataclass(slots=True)
class ProfileTarget:
    label: str
    runs: int
    operation: Callable[[], Coroutine[Any, Any, Any]]


@dataclass(slots=True)
class Profiling:
    """What a scenario returns in profile mode instead of its timings."""

    targets: list[ProfileTarget]
    close: Callable[[], Awaitable[None]] | None = None


def run_profiled(runner: asyncio.Runner, profiling: Profiling) -> str:
    """Run each target under `ThreadProfile`, starting the loop inside the profiled window."""
    reports = []
    for target in profiling.targets:
        with ThreadProfile() as profile:
            for _ in range(target.runs):
                runner.get_loop().run_until_complete(target.operation())
        reports.append(f"  -- {target.label}, {target.runs} run(s):\n{profile.report()}")
    if profiling.close is not None:
        runner.get_loop().run_until_complete(_closing(profiling.close))
    return "\n".join(reports)


async def _closing(close: Callable[[], Awaitable[None]]) -> None:
    await close()
