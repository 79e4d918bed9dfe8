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

Node work notes how long it held the loop (`note_held`), so that the loop monitor
(`engine.loop_monitor`) can name the execution behind a stall it measures.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from time import perf_counter
from typing import TypeVar

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


T = TypeVar("T")


async def paced(work: Generator[None, None, T], pause: Callable[[], Awaitable[None]]) -> T:
    """Run `work` to its end: it yields where it may stop for a moment, and `pause` is
    awaited there once the slice is over (counting and encoding outputs)."""
    try:
        while True:
            next(work)
            if due():
                await pause()
    except StopIteration as done:
        result: T = done.value
        return result


def at_once(work: Generator[None, None, T]) -> T:
    """Run `work` to its end without giving the event loop a turn (small work, tests)."""
    try:
        while True:
            next(work)
    except StopIteration as done:
        result: T = done.value
        return result


def restart() -> None:
    """The loop just had a turn: a new slice starts."""
    _slices.started = perf_counter()


def note_held(execution_id: str, node_name: str, held_s: float) -> None:
    """Note that a node's work held the loop for `held_s` without a break."""
    longest = _slices.longest
    if longest is None or held_s > longest.held_s:
        _slices.longest = Held(held_s, execution_id, node_name)


def take_longest() -> Held | None:
    """The longest stretch noted since the last call (the loop monitor's previous tick)."""
    longest, _slices.longest = _slices.longest, None
    return longest
