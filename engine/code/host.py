"""The sandbox host: a child process that runs Code node scripts in one V8 isolate.

`engine.code.sandbox` starts it as `python -m engine.code.host` and speaks frames
(`engine.code.frames`) on its stdin and stdout:

    parent -> host   config (JSON), once
    host -> parent   {"ready": true, ...}, once the isolate is set up
    parent -> host   per call: header (JSON: code, mode, facts, limits, timeout, seed),
                     items (a JSON array), upstream outputs (per node, its name and its items
                     as JSON, each on a line of its own)
    host -> parent   per call: the outcome: {"ok": true, "console": ...} followed by the items
                     in pieces, one JSON array per line; or {"ok": false, "error": {...},
                     "console": ...}

The isolate loads SES and locks down its intrinsics, then the harness (`js/harness.js`).
A call ends only once the microtask queue is empty: jobs a script left queued (a `then`
callback, an async function still awaiting) run within its time, never in a later call's.
A call that hits a limit (time, heap) is answered, then the host exits: its isolate is not
trusted again, and V8 may still be busy in a builtin that ignores termination. A watchdog
thread ends the process when its resident memory passes the limit (`EXIT_MEMORY`), which
catches what V8's heap limit cannot see (array buffers), and when a call is still running
a moment past its deadline (`EXIT_TIMEOUT`): promise jobs that never end, which nothing
interrupts. V8's own fatal errors end it too; the parent reports each of these as the
call's failure and starts another host.

The host has no credentials, no database and a scrubbed environment; scripts reach none of
it anyway (there is no I/O in the isolate), this is a second wall.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import orjson
from py_mini_racer import (
    JSEvalException,
    JSFunction,
    JSOOMException,
    JSParseException,
    MiniRacer,
    init_mini_racer,
)

from engine.code.frames import EXIT_DISCARD, EXIT_MEMORY, EXIT_TIMEOUT, read_frame, write_frame

JS = Path(__file__).parent / "js"
WATCHDOG_INTERVAL_S = 0.02
# How long past its deadline a call may take to answer (V8 stops a script at once) before
# the watchdog ends the process.
DEADLINE_GRACE_S = 0.01
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_SYNTAX_POSITION = "code.js"
_SETTLE = "__loom.settle()"


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


class _Watchdog:
    """Ends the process when its resident memory passes `limit_bytes` (set per call: the
    request itself is held three times, as bytes, text and V8 string), or when the call in
    progress is still running `DEADLINE_GRACE_S` past its `deadline` (monotonic time)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.deadline: float | None = None
        threading.Thread(target=self._watch, name="watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            if resident_bytes() > self.limit_bytes:
                os._exit(EXIT_MEMORY)
            pause_s = WATCHDOG_INTERVAL_S
            deadline = self.deadline
            if deadline is not None:
                left_s = deadline + DEADLINE_GRACE_S - time.monotonic()
                if left_s <= 0:
                    os._exit(EXIT_TIMEOUT)
                pause_s = min(pause_s, left_s)
            time.sleep(pause_s)


def _failure(error_type: str, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": error_type,
        "message": message,
        "name": "",
        "phase": "run",
        "line": None,
        "column": None,
        **fields,
    }


async def _syntax_position(code: str) -> tuple[int | None, int | None]:
    """Where a script's syntax error is: V8 reports it for a script, not for `eval`.

    Compiled in a scratch isolate of its own that is thrown away: if the code closes the
    wrapper early, whatever it smuggles out runs there, beside nothing, under a time limit.
    """
    with MiniRacer() as scratch:
        scratch.set_hard_memory_limit(16 * 1024 * 1024)
        try:
            await asyncio.wait_for(
                scratch.eval_cancelable(f"(async function () {{ 'use strict';\n{code}\n}})"),
                timeout=0.5,
            )
        except JSParseException as exc:
            return _parse_position(str(exc))
        except (JSEvalException, TimeoutError):
            return None, None
    return None, None


def _parse_position(report: str) -> tuple[int | None, int | None]:
    # "<anonymous>:LINE: SyntaxError: ...\n<source line>\n<spaces>^^^\n..."
    lines = report.split("\n")
    try:
        line = int(lines[0].split(":")[1]) - 1
    except (IndexError, ValueError):
        return None, None
    column = None
    if len(lines) > 2 and "^" in lines[2]:
        column = lines[2].index("^") + 1
    return (line, column) if line >= 1 else (None, column)


class Isolate:
    """One locked-down V8 isolate with the harness loaded. Created and used on the host's
    event loop, which is also mini-racer's: a call costs no thread hop of Python's own."""

    def __init__(self, heap_bytes: int, result_bytes: int) -> None:
        self.racer = MiniRacer()
        # The console SES reports to while it sets up; scripts get their own.
        self.racer.eval(
            "globalThis.console = {log() {}, info() {}, warn() {}, error() {}, debug() {}, "
            "groupCollapsed() {}, groupEnd() {}}"
        )
        self.racer.eval((JS / "ses.umd.min.js").read_text(encoding="utf-8"))
        self.racer.eval(
            "lockdown({errorTaming: 'unsafe', overrideTaming: 'severe', "
            "consoleTaming: 'unsafe', evalTaming: 'safe-eval', stackFiltering: 'verbose'})"
        )
        self.racer.eval((JS / "harness.js").read_text(encoding="utf-8"))
        self.run = cast(JSFunction, self.racer.eval("__loom.run")).cancelable()
        used = int(self.racer.heap_stats()["used_heap_size"])
        # Scripts get the configured heap on top of what SES and the harness use.
        self.racer.set_hard_memory_limit(used + heap_bytes)
        self.result_bytes = result_bytes

    async def call(self, request: bytes, code: str, timeout_s: float) -> tuple[bytes, bool]:
        """The outcome of one call, and whether the isolate must be discarded after it."""
        # mini-racer empties the microtask queue after each task and before the next one:
        # a `settle` task starts only once every promise job the script left has run.
        try:
            async with asyncio.timeout(timeout_s):
                # The request goes in as `this` (a string): no arguments array to build.
                outcome = await self.run(this=cast(Any, request.decode()))
                if outcome is None:
                    # Code that awaits: its outcome comes once its jobs have run.
                    outcome = await self.racer.eval_cancelable(_SETTLE)
                else:
                    # Code that returned: jobs it may have left (a `then` callback, an async
                    # function it did not await) run now. The call blocks, which spares a
                    # wake-up of this loop on every call: jobs that never end are ended with
                    # this process, by the watchdog.
                    self.racer.eval(_SETTLE)
        except TimeoutError:
            return _limit("CODE_TIMEOUT", "time"), True
        except JSEvalException as exc:
            if self.racer.was_hard_memory_limit_reached() or isinstance(exc, JSOOMException):
                return _limit("CODE_MEMORY_LIMIT", "heap"), True
            failure = _failure("CODE_ERROR", f"the sandbox failed: {exc}")
            reply = {"ok": False, "error": failure, "console": None, "discard": True}
            return orjson.dumps(reply), True
        if self.racer.was_hard_memory_limit_reached():
            return _limit("CODE_MEMORY_LIMIT", "heap"), True
        if not isinstance(outcome, str):
            failure = _failure(
                "CODE_ERROR",
                "the code never finished: it awaits a promise that nothing resolves "
                "(there are no timers or I/O in the Code node)",
            )
            return orjson.dumps({"ok": False, "error": failure, "console": None}), False
        encoded = outcome.encode()
        if len(encoded) > self.result_bytes:
            return _limit("CODE_MEMORY_LIMIT", "result", discard=False), False
        if outcome.startswith('{"ok":false,"error":{"type":"CODE_ERROR","phase":"compile"'):
            return await _locate_syntax_error(outcome, code), False
        return encoded, False


def _limit(error_type: str, limit: str, *, discard: bool = True) -> bytes:
    # The parent words the message: it knows the limits as the user set them.
    failure = _failure(error_type, "", limit=limit)
    return orjson.dumps({"ok": False, "error": failure, "console": None, "discard": discard})


async def _locate_syntax_error(outcome: str, code: str) -> bytes:
    reply = orjson.loads(outcome)
    error = reply["error"]
    compile_error = error.get("phase") == "compile" and error.get("name") == "SyntaxError"
    if compile_error and error.get("line") is None:
        error["line"], error["column"] = await _syntax_position(code)
    return orjson.dumps(reply)


async def serve() -> int:
    """Answer calls until stdin closes (0) or a call leaves the isolate untrusted."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    config_frame = read_frame(stdin)
    if config_frame is None:
        return 0
    config = orjson.loads(config_frame)
    # V8's own heap ceiling: an allocation no GC could have caught ends this process fast,
    # rather than after it grew to gigabytes.
    init_mini_racer(flags=("--single-threaded", f"--max-heap-size={config['max_heap_mb']}"))
    isolate = Isolate(int(config["heap_bytes"]), int(config["result_bytes"]))
    baseline = resident_bytes() + int(config["rss_budget_bytes"])
    watchdog = _Watchdog(baseline)
    write_frame(stdout, orjson.dumps({"ready": True}))
    stdout.flush()
    while True:
        # Blocking reads on the loop: between calls there is nothing else for it to do.
        header = read_frame(stdin)
        items = read_frame(stdin)
        nodes = read_frame(stdin)
        if header is None or items is None or nodes is None:
            return 0
        watchdog.limit_bytes = baseline + 3 * (len(header) + len(items) + len(nodes))
        facts = orjson.loads(header)
        request = b"\n".join((header, items, nodes))
        timeout_s = float(facts["timeout_s"])
        watchdog.deadline = time.monotonic() + timeout_s
        reply, discard = await isolate.call(request, facts["code"], timeout_s)
        watchdog.deadline = None
        write_frame(stdout, reply)
        stdout.flush()
        if discard:
            return EXIT_DISCARD


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
