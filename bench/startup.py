"""Start-up benchmark: time from launching `loom serve` to `/readyz` answering 200, and the
idle RSS a second later, embedded mode, on a database already migrated (a restart).

    .venv/bin/python bench/startup.py [--runs 7] [--code DIR]

`--code DIR` runs the same from another checkout of Loom (before-figures), alternating with
this one so both see the same machine. Targets (issue 14): ready in at most 1 s, idle RSS at
most 80 MB. The CPU time the process had used when it answered is printed too: on a shared
machine it varies far less than the time to ready.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.soak import cpu_s, rss_mb
from tests.distributed.cluster import free_port

TARGET_READY_S = 1.0
TARGET_RSS_MB = 80.0


def start_once(code: Path | None, data_dir: Path) -> tuple[float, float, float]:
    """(seconds to ready, CPU seconds to ready, idle RSS in MB) of one start."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env.update(LOOM_DATA_DIR=str(data_dir), LOOM_PORT=str(port), LOOM_LOG_LEVEL="warning")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "from server.cli import main; main()", "serve"],
        env=env,
        cwd=data_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("loom serve exited")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.005)
        ready_s = time.perf_counter() - started
        ready_cpu_s = cpu_s(process.pid)
        time.sleep(1)
        return ready_s, ready_cpu_s, rss_mb(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--code", help="also start Loom from this checkout (before-figures)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    checkouts: dict[str, Path | None] = {f"this checkout ({here})": None}
    if args.code:
        checkouts[f"--code ({Path(args.code).resolve()})"] = Path(args.code).resolve()
    figures: dict[str, list[tuple[float, float, float]]] = {label: [] for label in checkouts}
    data_dirs = {label: Path(tempfile.mkdtemp(prefix="loom-bench-startup-")) for label in checkouts}
    for label, code in checkouts.items():
        start_once(code, data_dirs[label])  # creates and migrates the database
    for _ in range(args.runs):
        for label, code in checkouts.items():
            figures[label].append(start_once(code, data_dirs[label]))
    print(f"loom serve start to /readyz, embedded, migrated database, {args.runs} runs each")
    for label, runs in figures.items():
        ready = statistics.median(ready for ready, _, _ in runs)
        cpu = statistics.median(cpu for _, cpu, _ in runs)
        rss = statistics.median(rss for _, _, rss in runs)
        spread = ", ".join(f"{ready * 1000:.0f}" for ready, _, _ in runs)
        verdict = (
            f"ready {'met' if ready <= TARGET_READY_S else 'MISSED'} (<= {TARGET_READY_S} s), "
            f"RSS {'met' if rss <= TARGET_RSS_MB else 'MISSED'} (<= {TARGET_RSS_MB:.0f} MB)"
        )
        print(
            f"{label}: ready {ready * 1000:.0f} ms (runs {spread}), CPU to ready "
            f"{cpu * 1000:.0f} ms, idle RSS {rss:.0f} MB; {verdict}"
        )


if __name__ == "__main__":
    main()
