"""The loop that fires schedule triggers in this process (embedded `loom serve`, and every
`loom worker`): `ExecutionLifecycle.fire_schedules`, where each tick runs once across
processes (`storage.schedules.fire_due`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

from storage.types import utcnow

if TYPE_CHECKING:
    from server.settings import Settings
    from storage.db import Database

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


async def run_pruner(
    prune: Callable[..., Awaitable[object]], interval_s: float, discarded_interval_s: float
) -> None:
    """Prune old executions every `interval_s` (storage/retention.py), the first time one
    interval after the start: a process that restarts often does not prune each time; and
    those that kept none of their data every `discarded_interval_s` (a cheap query)."""
    discarded_interval_s = min(discarded_interval_s, interval_s)
    next_full = time.monotonic() + interval_s
    while True:
        await asyncio.sleep(min(discarded_interval_s, max(next_full - time.monotonic(), 0)))
        full = time.monotonic() >= next_full
        if full:
            next_full = time.monotonic() + interval_s
        try:
            await prune(only_discarded=not full)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("pruning old executions failed; trying again later")


def start_pruning(database: Database, settings: Settings) -> asyncio.Task[None]:
    """The task that prunes old executions in a process that schedules."""
    from storage.retention import prune

    policy = settings.retention_policy()
    return asyncio.create_task(
        run_pruner(
            partial(prune, database, policy),
            settings.prune_interval_s,
            max(settings.prune_none_after_s / 4, 1.0),
        ),
        name="pruner",
    )
