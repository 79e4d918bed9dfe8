"""The parent side of the Code node sandbox: a bounded pool of host processes.

Each host (`engine.code.host`) runs one V8 isolate and serves one call at a time; a call
runs in a thread of this pool's own executor, so the event loop only awaits a future. The
pool never holds more than `pool_size` hosts; further calls wait for one. A call's time
counts from when it was made: a call still waiting for a host at its deadline fails
CODE_TIMEOUT without running.

The items go to the host as JSON, and the result comes back as JSON, encoded and decoded
on the event loop in pieces of a few hundred kilobytes, with a turn of the loop between
pieces whenever its slice is up (`engine.slices`): 100,000 items never hold the API for
long. (A thread would not help: orjson holds the GIL for as long as it works.)

A call ends in one of three ways besides its result:

- its deadline passes: V8 terminates the script (the host answers CODE_TIMEOUT and exits);
  a host that does not answer within `KILL_GRACE_S` more is killed;
- it is cancelled (cancelExecution, an execution or node timeout): its host is killed at
  once, which stops anything, even a V8 builtin that ignores termination;
- its host dies (V8's fatal out-of-memory, the host's memory watchdog): CODE_MEMORY_LIMIT,
  or CODE_ERROR for a crash that is not about memory.

A host that ended is replaced in the background, so the next call finds a fresh isolate.

Over 400 lines, but one cohesive thing: the host pool and its calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

import orjson

from engine.code.frames import EXIT_MEMORY, EXIT_TIMEOUT
from engine.code.hosts import Host, HostDied, Reaper
from engine.code.limits import MB, CodeLimits
from engine.errors import EngineError
from engine.events import ConsoleOutput
from engine.slices import due, give_turn, restart

logger = logging.getLogger("loom.code")

# How long a host may take to answer once the script's time is up, before it is killed.
KILL_GRACE_S = 0.2
# How deep a result may nest: orjson's limit, where it stops reading.
MAX_RESULT_DEPTH = 1024
# How often a call waiting for a free host checks whether it was cancelled.
WAIT_POLL_S = 0.05
_MEMORY_WORDS = ("out of memory", "heap limit", "allocation failed", "invalid size", "oom")
# Items are encoded in pieces of about this size (the harness sends its result likewise):
# orjson takes a millisecond or two over one.
PIECE_BYTES = 256 * 1024
# The first piece's items: a call with no more is encoded in one go.
FIRST_PIECE_ITEMS = 64
# 128 bits from the operating system's CSPRNG seed each call's Math.random.
SEED_BYTES = 16
_SEED = struct.Struct("<4I")

Piece = bytes | memoryview


class CodeFailure(EngineError):
    """A script that did not produce items: `error_type` is CODE_TIMEOUT, CODE_MEMORY_LIMIT
    or CODE_ERROR; `line` and `column` point into the script when known."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        console: ConsoleOutput | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.line = line
        self.column = column
        self.console = console
        self.details = dict(details or {})


@dataclass(frozen=True, slots=True)
class CodeCall:
    """One run of a script over a node's items."""

    code: str
    mode: str
    items: Sequence[Mapping[str, Any]]
    # Outputs of the upstream nodes the script may read with `$("Name")`, by name.
    nodes: Mapping[str, Sequence[Mapping[str, Any]]]
    # `$execution`, `$workflow`, `$now`.
    facts: Mapping[str, Any]
    # From when `CodeSandbox.run` is called: waiting for a free host counts.
    timeout_s: float


@dataclass(frozen=True, slots=True)
class CodeResult:
    items: list[dict[str, Any]]
    console: ConsoleOutput = field(default_factory=ConsoleOutput)


class _Ticket:
    """A call in flight: cancelling it kills the host it runs on."""

    def __init__(self) -> None:
        self.cancelled = False
        # Its deadline passed while it waited for a thread of the pool: it never ran.
        self.expired = False
        self.host: Host | None = None
        self.lock = threading.Lock()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.host is not None:
                self.host.kill()

    def attach(self, host: Host) -> bool:
        with self.lock:
            if self.cancelled:
                return False
            self.host = host
            return True


class _Cancelled(Exception):
    pass


class CodeSandbox:
    """Runs Code node scripts in a bounded pool of V8 sandbox processes."""

    def __init__(
        self, limits: CodeLimits | None = None, *, entropy: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.limits = limits or CodeLimits()
        # Where the seeds of Math.random come from: a CSPRNG (tests pin them).
        self._entropy = entropy
        self._idle: SimpleQueue[Host] = SimpleQueue()
        self._lock = threading.Lock()
        self._hosts = 0  # alive or starting
        self._closed = False
        self._live: set[Host] = set()
        self._reaper = Reaper()
        # What the harness enforces itself, in the script's own terms.
        self._script_limits = {
            "consoleLines": self.limits.console_lines,
            "consoleBytes": self.limits.console_bytes,
            "resultChars": self.limits.result_bytes,
        }
        self._executor = ThreadPoolExecutor(
            max_workers=self.limits.pool_size, thread_name_prefix="loom-code"
        )
        # A sandbox dropped without `close()` (an app whose lifespan never ran) still stops
        # its hosts.
        weakref.finalize(self, _stop_hosts, self._live, self._lock)

    async def run(self, call: CodeCall) -> CodeResult:
        """Run the script; raises `CodeFailure`. Its time counts from now, waiting for a free
        host included. Cancelling the caller stops it at once."""
        deadline = time.monotonic() + call.timeout_s
        items = await _json_array(call.items)
        nodes = await _outputs(call.nodes)
        ticket = _Ticket()
        future = self._executor.submit(self._serve, call, items, nodes, ticket, deadline)
        # A call that no thread has taken by its deadline is withdrawn (one that runs is
        # ended by its host's deadline instead).
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, deadline - time.monotonic()), _expire, future, ticket
        )
        try:
            head, reply = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if ticket.expired:
                raise self._timeout(waited=True) from None
            ticket.cancel()
            raise
        finally:
            expiry.cancel()
        restart()  # the loop was free while the script ran: a slice starts for decoding
        return await self._result(head, reply)

    def close(self) -> None:
        """Stop every host; calls in flight fail."""
        with self._lock:
            self._closed = True
        _stop_hosts(self._live, self._lock)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # In the pool's threads

    def _serve(
        self,
        call: CodeCall,
        items: list[Piece],
        nodes: list[Piece],
        ticket: _Ticket,
        deadline: float,
    ) -> tuple[dict[str, Any], bytes]:
        """The head of the host's reply (parsed) and the whole reply."""
        if time.monotonic() >= deadline:
            raise self._timeout(waited=True)
        host = self._take(ticket, deadline)
        if not ticket.attach(host):
            self._give_back(host)
            raise _Cancelled
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            self._give_back(host)
            raise self._timeout(waited=True)
        header = {
            "code": call.code,
            "mode": call.mode,
            "facts": call.facts,
            "limits": self._script_limits,
            "timeout_s": remaining_s,
            "seed": _SEED.unpack(self._entropy(SEED_BYTES)),
        }
        try:
            reply = host.exchange(
                [[orjson.dumps(header)], items, nodes], deadline + KILL_GRACE_S, self._reaper
            )
        except HostDied:
            failure = self._death(host, ticket)
            self._give_back(host)
            raise failure from None
        except BaseException:
            host.kill()  # a call cut short leaves the host mid-frame: it is not used again
            self._give_back(host)
            raise
        # The head is a line of its own, small: the items that may follow are decoded on the
        # event loop, in pieces.
        newline = reply.find(b"\n")
        try:
            head = orjson.loads(reply if newline < 0 else memoryview(reply)[:newline])
        except orjson.JSONDecodeError as exc:
            host.kill()
            self._give_back(host)
            logger.error("a Code node sandbox answered with text that is not JSON: %s", exc)
            raise CodeFailure(
                "CODE_ERROR", "the code's sandbox gave an answer Loom cannot read"
            ) from exc
        if head.get("discard"):
            host.kill()  # it exits by itself; not a moment to wait for that
        self._give_back(host)
        return head, reply

    def _take(self, ticket: _Ticket, deadline: float) -> Host:
        while True:
            if ticket.cancelled:
                raise _Cancelled
            try:
                return self._idle.get_nowait()
            except Empty:
                pass
            with self._lock:
                if self._closed:
                    raise CodeFailure("CODE_ERROR", "the code sandbox is shut down")
                start = self._hosts < self.limits.pool_size
                if start:
                    self._hosts += 1
            if start:
                return self._start_host()
            if time.monotonic() >= deadline:
                raise self._timeout(waited=True)
            try:
                return self._idle.get(timeout=WAIT_POLL_S)
            except Empty:
                continue

    def _start_host(self) -> Host:
        try:
            host = Host(self.limits)
        except (HostDied, OSError) as exc:
            with self._lock:
                self._hosts -= 1
            logger.error("a Code node sandbox did not start: %s", exc)
            raise CodeFailure("CODE_ERROR", f"the code sandbox did not start: {exc}") from exc
        with self._lock:
            self._live.add(host)
        return host

    def _give_back(self, host: Host) -> None:
        if host.alive:
            with self._lock:
                closed = self._closed
            if not closed:
                self._idle.put(host)
                return
        with self._lock:
            self._hosts -= 1
            self._live.discard(host)
            replace = not self._closed
        host.close()
        if replace:
            threading.Thread(target=self._replace, name="loom-code-start", daemon=True).start()

    def _replace(self) -> None:
        """Start a host ahead of need, so the next call does not wait for V8 to load."""
        with self._lock:
            if self._closed or self._hosts >= self.limits.pool_size:
                return
            self._hosts += 1
        try:
            host = self._start_host()
        except CodeFailure:
            return
        self._give_back(host)

    def _death(self, host: Host, ticket: _Ticket) -> Exception:
        host.kill()
        try:
            code = host.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if ticket.cancelled:
            return _Cancelled()
        if code == EXIT_MEMORY:
            return self._memory("memory")
        if code == EXIT_TIMEOUT or host.killed_at is not None:
            return self._timeout()
        tail = host.stderr_tail()
        if any(word in tail.lower() for word in _MEMORY_WORDS):
            return self._memory("heap")
        logger.error("a Code node sandbox crashed (exit %s): %s", code, tail[-500:])
        return CodeFailure("CODE_ERROR", f"the code's sandbox process crashed (exit code {code})")

    async def _result(self, head: dict[str, Any], reply: bytes) -> CodeResult:
        """The items that follow the head, one piece (a JSON array) per line."""
        if not head.get("ok"):
            raise self._failure(head)
        items: list[dict[str, Any]] = []
        view = memoryview(reply)
        end = reply.find(b"\n")
        while end >= 0:
            start = end + 1
            end = reply.find(b"\n", start)
            try:
                items.extend(orjson.loads(view[start : len(reply) if end < 0 else end]))
            except orjson.JSONDecodeError:
                # What V8 wrote is JSON; orjson refuses it only past its nesting limit.
                raise CodeFailure(
                    "CODE_ERROR",
                    f"the result nests deeper than {MAX_RESULT_DEPTH} levels of arrays and objects",
                    details={"limit": "depth"},
                ) from None
            if due():
                await give_turn()
        return CodeResult(items, ConsoleOutput.from_json(head["console"]))

    def _failure(self, outcome: dict[str, Any]) -> CodeFailure:
        console = outcome.get("console")
        captured = None if console is None else ConsoleOutput.from_json(console)
        error = outcome["error"]
        error_type = error["type"]
        limit = error.get("limit")
        if error_type == "CODE_TIMEOUT":
            return self._timeout()
        if error_type == "CODE_MEMORY_LIMIT" and limit in ("heap", "memory"):
            return self._memory(limit)
        if error_type == "CODE_MEMORY_LIMIT" and limit == "result":
            return self._result_too_large(captured)
        return CodeFailure(
            error_type,
            error["message"],
            line=error.get("line"),
            column=error.get("column"),
            console=captured,
        )

    def _timeout(self, *, waited: bool = False) -> CodeFailure:
        if waited:
            return CodeFailure(
                "CODE_TIMEOUT",
                "the code waited for a free sandbox until its time was up, and did not run",
                details={"limit": "time", "sandboxes": self.limits.pool_size},
            )
        return CodeFailure(
            "CODE_TIMEOUT",
            "the code did not finish in time and was stopped",
            details={"limit": "time"},
        )

    def _memory(self, limit: str) -> CodeFailure:
        heap_mb = self.limits.heap_bytes / MB
        return CodeFailure(
            "CODE_MEMORY_LIMIT",
            f"the code used more than its {heap_mb:g} MB of memory and was stopped",
            details={"limit": limit, "heapMb": heap_mb},
        )

    def _result_too_large(self, console: ConsoleOutput | None) -> CodeFailure:
        result_mb = self.limits.result_bytes / MB
        return CodeFailure(
            "CODE_MEMORY_LIMIT",
            f"the code returned more than {result_mb:g} MB of JSON",
            console=console,
            details={"limit": "result", "resultMb": result_mb},
        )


def _expire(future: Future[Any], ticket: _Ticket) -> None:
    """The deadline passed: withdraw the call if no thread has taken it yet."""
    if future.cancel():
        ticket.expired = True


async def _json_array(items: Sequence[Any]) -> list[Piece]:
    """`items` as one JSON array, encoded in pieces of about `PIECE_BYTES`."""
    if len(items) <= FIRST_PIECE_ITEMS:
        return [_encoded(items)]
    pieces: list[Piece] = [b"["]
    count = FIRST_PIECE_ITEMS
    start = 0
    while start < len(items):
        end = min(len(items), start + count)
        piece = _encoded(items[start:end])
        if start:
            pieces.append(b",")
        pieces.append(memoryview(piece)[1:-1])
        start = end
        if len(piece) < PIECE_BYTES // 2:
            count *= 2
        elif len(piece) > PIECE_BYTES * 2:
            count = max(1, count // 2)
        if due():
            await give_turn()
    pieces.append(b"]")
    return pieces


async def _outputs(nodes: Mapping[str, Sequence[Any]]) -> list[Piece]:
    """Upstream outputs as the harness reads them: per node, its name and its items, as JSON,
    each on a line of its own."""
    pieces: list[Piece] = []
    for name, items in nodes.items():
        if pieces:
            pieces.append(b"\n")
        pieces.extend((_encoded(name), b"\n"))
        pieces.extend(await _json_array(items))
    return pieces


def _encoded(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        # Node outputs were JSON when stored; only a caller of the sandbox itself gets here.
        raise CodeFailure("CODE_ERROR", f"the code's input is not JSON: {exc}") from exc


def _stop_hosts(live: set[Host], lock: threading.Lock) -> None:
    with lock:
        hosts = list(live)
        live.clear()
    for host in hosts:
        host.close()


_shared: CodeSandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> CodeSandbox:
    """The sandbox, with default limits, of runs that bring none (`loom run`, tests): its
    hosts start on first use and end with this process (their stdin closes)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = CodeSandbox()
        return _shared
