"""Sandbox host processes as the parent sees them: start, call, kill, and the reaper that
kills a host whose call outlived its deadline."""

from __future__ import annotations

import contextlib
import heapq
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import orjson

from engine.code.frames import read_frame, write_frame
from engine.code.limits import CodeLimits
from engine.errors import EngineError

# How long a new host may take to load V8, SES and the harness.
START_TIMEOUT_S = 30.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_STDERR_TAIL_BYTES = 4096


class HostDied(EngineError):
    """The host's pipe closed: it exited, crashed or was killed."""


class Reaper:
    """Kills hosts whose call outlives its deadline: one thread for the whole pool, since a
    timer thread per call would cost more than the call."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Host]] = []
        self._serial = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, host: Host, deadline: float) -> int:
        with self._wake:
            self._serial += 1
            heapq.heappush(self._due, (deadline, self._serial, host))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="loom-code-reaper", daemon=True
                )
                self._thread.start()
            self._wake.notify()
            return self._serial

    def release(self, serial: int) -> None:
        with self._wake:
            self._due = [entry for entry in self._due if entry[1] != serial]
            heapq.heapify(self._due)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    _, _, host = heapq.heappop(self._due)
                    host.kill()
                self._wake.wait(self._due[0][0] - now if self._due else None)


class Host:
    """One sandbox process."""

    def __init__(self, limits: CodeLimits) -> None:
        # Kept for the host's lifetime: V8's last words when it crashes.
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-s", "-m", "engine.code.host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            # Nothing of this process's environment (its secrets) goes to the host.
            env={"PYTHONPATH": str(_PACKAGE_ROOT)},
            cwd=_PACKAGE_ROOT,
            # Ctrl-C in a terminal reaches this process, which stops its hosts itself.
            start_new_session=True,
        )
        self.killed_at: float | None = None
        config = {
            "heap_bytes": limits.heap_bytes,
            "result_bytes": limits.result_bytes,
            "max_heap_mb": limits.v8_max_heap_mb,
            "rss_budget_bytes": limits.rss_budget_bytes,
        }
        timer = threading.Timer(START_TIMEOUT_S, self.kill)
        timer.start()
        try:
            self._send([[orjson.dumps(config)]])
            ready = self._receive()
        finally:
            timer.cancel()
        if not orjson.loads(ready).get("ready"):
            self.kill()
            raise HostDied("the sandbox host did not start")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self.killed_at is None

    def kill(self) -> None:
        if self.killed_at is None:
            self.killed_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def exchange(
        self, frames: list[list[bytes | memoryview]], deadline: float, reaper: Reaper
    ) -> bytes:
        """Send one call and wait for its outcome; the host is killed at `deadline`."""
        serial = reaper.watch(self, deadline)
        try:
            self._send(frames)
            return self._receive()
        finally:
            reaper.release(serial)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.stderr):
            if stream is not None:
                stream.close()

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
            return self.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def _send(self, frames: list[list[bytes | memoryview]]) -> None:
        """Write frames, each given as the pieces of its payload."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            for frame in frames:
                write_frame(stdin, *frame)
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise HostDied(str(exc)) from exc

    def _receive(self) -> bytes:
        stdout = self.process.stdout
        assert stdout is not None
        frame = read_frame(stdout)
        if frame is None:
            raise HostDied("the sandbox host closed its pipe")
        return frame
