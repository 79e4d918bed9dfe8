"""The loop that fires schedule triggers in this process (embedded `loom serve`, and every
`loom worker`): `ExecutionLifecycle.fire_schedules`, where each tick runs once across
processes (`storage.schedules.fire_due`)."""

from __future__ import annotations

import asyncio
import logging
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


async def run_pruner(prune: Callable[[], Awaitable[object]], interval_s: float) -> None:
    """Prune old executions every `interval_s` (storage/retention.py), the first time one
    interval after the start: a process that restarts often does not prune each time."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await prune()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("pruning old executions failed; trying again later")


def start_pruning(database: Database, settings: Settings) -> asyncio.Task[None]:
    """The task that prunes old executions in a process that schedules."""
    from storage.retention import prune

    policy = settings.retention_policy()
    return asyncio.create_task(
        run_pruner(partial(prune, database, policy), settings.prune_interval_s), name="pruner"
    )
