"""The loop that fires schedule triggers in this process (embedded `loom serve`, and every
`loom worker`): `ExecutionLifecycle.fire_schedules`, where each tick runs once across
processes (`storage.schedules.fire_due`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from storage.types import utcnow

logger = logging.getLogger("loom.scheduler")

TICK_S = 1.0


async def run_scheduler(
    fire: Callable[[datetime], Awaitable[object]],
    tick_s: float = TICK_S,
) -> None:
    while True:
        try:
            await fire(utcnow())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("firing schedules failed; trying again")
        await asyncio.sleep(tick_s)
