"""The event loop's lag, measured, and stalls logged with the execution that caused them.

A small task sleeps `interval_s` at a time and measures how late it wakes: that lateness is
how long the loop was held by something that did not yield. Over `stall_s` it is a stall,
logged as a warning with the longest step of node work measured since the previous tick
(`engine.slices.timed`): the execution and node whose step held the loop, if one did. Only
time a node's code ran without yielding counts, so a node that was awaiting meanwhile (a
wait, a request) is never blamed, whenever it happens to resume. `loom serve` and `loom
worker` each run one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

from engine import metrics, slices

logger = logging.getLogger("loom.loop")

DEFAULT_INTERVAL_S = 0.05
DEFAULT_STALL_S = 0.1
# Recent lags kept for whoever wants their distribution (tests, benchmarks): a minute's.
RECENT_LAGS = 1200


class LoopMonitor:
    """Measures the lag of the running event loop and logs stalls."""

    def __init__(
        self, stall_s: float = DEFAULT_STALL_S, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        self.stall_s = stall_s
        self.interval_s = interval_s
        self.lags_s: deque[float] = deque(maxlen=RECENT_LAGS)
        self.stalls = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        slices.take_longest()  # what was noted before this monitor watched is not its concern
        while True:
            asleep_at = loop.time()
            await asyncio.sleep(self.interval_s)
            lag_s = max(0.0, loop.time() - asleep_at - self.interval_s)
            slices.restart()  # the loop is free: whatever ran before this tick has yielded
            held = slices.take_longest()
            self.lags_s.append(lag_s)
            metrics.loop_lag(lag_s)
            if lag_s >= self.stall_s:
                self.stalls += 1
                self._report(lag_s, held)

    def _report(self, lag_s: float, held: slices.Held | None) -> None:
        # A stretch of node work counts as the cause when it covers most of the stall.
        if held is not None and held.held_s >= lag_s / 2:
            logger.warning(
                "event loop stalled for %.0f ms: execution %s, node %r held it for %.0f ms",
                lag_s * 1000,
                held.execution_id,
                held.node_name,
                held.held_s * 1000,
                extra={"execution_id": held.execution_id, "node_name": held.node_name},
            )
            return
        logger.warning(
            "event loop stalled for %.0f ms: no execution's node held it that long (the API, "
            "storage or the engine's own work)",
            lag_s * 1000,
        )


@contextlib.asynccontextmanager
async def monitoring(stall_s: float = DEFAULT_STALL_S) -> AsyncIterator[LoopMonitor]:
    """Run a `LoopMonitor` on the current loop for the duration of the block."""
    monitor = LoopMonitor(stall_s)
    task = asyncio.create_task(monitor.run(), name="loop monitor")
    try:
        yield monitor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
