"""Sharing the event loop: CPU-bound node work runs in slices of a few milliseconds.

Behaviours and the executor run on the same event loop as the API (embedded mode), the
subscriptions and the queue's workers. A loop over many items asks `due()` after each item
and, once the current slice has lasted `SLICE_S`, gives the loop a turn (`give_turn`): other
requests are served, and a timeout or cancellation that fell due is delivered there (as
`CancelledError`), so that it stops the node within a slice. What one item may cost in
between is bounded by the expression budget (`engine.expressions.budget`).

The slice is the process's, not a node's: it restarts whenever the loop is known to have had
a turn (a pause here, a tick of the loop monitor). A chain of nodes that each stay under
`SLICE_S` still pauses once the chain has.

The executor runs each node's work under `timed`, which measures every step the work takes
on the event loop (from when the loop resumes it to when it awaits again), so that the loop
monitor (`engine.loop_monitor`) can name the execution behind a stall it measures: the one
whose step held the loop, never one that was merely awaiting meanwhile.
"""

from __future__ import annotations

import asyncio
import types
import weakref
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from time import perf_counter
from typing import Any, TypeVar

T = TypeVar("T")

SLICE_S = 0.005
TURNS = 8
# A turn this short ran nothing but the loop's own bookkeeping: no more turns are needed.
IDLE_TURN_S = 0.00005


@dataclass(frozen=True, slots=True)
class Held:
    """A stretch of one node's work that held the event loop."""

    held_s: float
    execution_id: str
    node_name: str


class _Slices:
    __slots__ = ("longest", "started")

    def __init__(self) -> None:
        self.started = perf_counter()
        # The longest stretch noted since the monitor last took it.
        self.longest: Held | None = None


_slices = _Slices()


def due() -> bool:
    """Whether the current slice is over: the caller should give the loop a turn."""
    return perf_counter() - _slices.started >= SLICE_S


async def give_turn() -> None:
    """Let everything else that is ready run, then start a new slice.

    One turn of the loop moves a request on by one step (read, run the handler, write);
    a request needs a few. Yielding once per slice would make it wait a slice per step, so
    the loop gets up to `TURNS` turns, fewer when a turn finds nothing to run. While one node
    gives its turns, other nodes that end their slice wait for them to be given (they do not
    run their next items in those turns): however many executions run, a request waits for
    one slice at most, not one per execution.
    """
    async with _pacing():
        for _ in range(TURNS):
            turn_started = perf_counter()
            await asyncio.sleep(0)
            if perf_counter() - turn_started < IDLE_TURN_S:
                break  # nothing else ran in that turn: the loop has nothing waiting
    restart()


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _pacing() -> asyncio.Lock:
    """The running loop's lock over giving turns (an asyncio lock belongs to one loop)."""
    loop = asyncio.get_running_loop()
    lock = _pacers.get(loop)
    if lock is None:
        lock = _pacers[loop] = asyncio.Lock()
    return lock


def restart() -> None:
    """The loop just had a turn: a new slice starts."""
    _slices.started = perf_counter()


# Steps shorter than this are not noted: too short to be part of a stall worth reporting.
NOTE_FROM_S = 0.001


@types.coroutine
def timed(
    coroutine: Coroutine[Any, Any, T], execution_id: str, node_name: str
) -> Generator[Any, Any, T]:
    """Await `coroutine`, a node's work, noting how long each of its steps holds the event
    loop (`await timed(...)`).

    A step is what the coroutine runs between two awaits that suspend it (one `send()` into
    it): only then does it hold the loop. Costs two clock reads a step.
    """
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        started = perf_counter()
        try:
            yielded = coroutine.send(sent) if thrown is None else coroutine.throw(thrown)
        except BaseException as exc:  # the coroutine ended: returned, raised, cancelled
            held_s = perf_counter() - started
            if held_s >= NOTE_FROM_S:
                note_held(execution_id, node_name, held_s)
            if isinstance(exc, StopIteration):
                return exc.value  # type: ignore[no-any-return]
            raise
        held_s = perf_counter() - started
        if held_s >= NOTE_FROM_S:
            note_held(execution_id, node_name, held_s)
        try:
            sent, thrown = (yield yielded), None
        except BaseException as exc:  # thrown in by the task: cancellation
            sent, thrown = None, exc


def note_held(execution_id: str, node_name: str, held_s: float) -> None:
    """Note that a node's work held the loop for `held_s` without a break."""
    longest = _slices.longest
    if longest is None or held_s > longest.held_s:
        _slices.longest = Held(held_s, execution_id, node_name)


def take_longest() -> Held | None:
    """The longest stretch noted since the last call (the loop monitor's previous tick)."""
    longest, _slices.longest = _slices.longest, None
    return longest


# Synchronous work that may pause: a generator that yields (None) wherever pausing is
# safe, and returns its result. `finish` runs it straight through; `finish_in_slices` gives
# the loop a turn at those points once a slice has passed.
Work = Generator[None, None, T]


def finish(work: Work[T]) -> T:
    """Run `work` to its end without pausing (tests, the CLI, code without a loop)."""
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def finish_in_slices(work: Work[T]) -> T:
    """Run `work` to its end on the event loop, a slice at a time."""
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        if due():
            await give_turn()
