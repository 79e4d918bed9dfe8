"""Measuring how long the event loop is held while a test's block runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class Hold:
    """The longest time the loop went without giving a ready task its turn."""

    longest_s: float = 0.0


@contextlib.asynccontextmanager
async def longest_hold(*, without_old_garbage: bool = False) -> AsyncIterator[Hold]:
    """Measure, with a task that asks for a turn each time it gets one, the longest stretch
    the loop is held while the block runs.

    `without_old_garbage` freezes the objects that exist before the block (the test run's:
    modules, fixtures), so that a full garbage collection, which the block's allocations
    may set off, scans only what the block made: what is measured is then the block's own
    work, not the size of the test process.
    """
    hold = Hold()
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            hold.longest_s = max(hold.longest_s, now - last)
            last = now

    if without_old_garbage:
        gc.freeze()
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker's first turn: it measures from the block's start
    try:
        yield hold
    finally:
        running = False
        await ticking
        if without_old_garbage:
            gc.unfreeze()
