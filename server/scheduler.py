"""The loop that fires schedule triggers in this process (embedded `loom serve`, and every
`loom worker`); `storage.schedules.fire_due` makes each tick run once across processes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from engine.node_type_policy import EMPTY
from storage import schedules
from storage.db import Database
from storage.models import Execution
from storage.node_type_policies import NodeTypePolicies
from storage.types import utcnow

logger = logging.getLogger("loom.scheduler")

TICK_S = 1.0


async def run_scheduler(
    database: Database,
    submit: Callable[[Execution], Awaitable[None]],
    tick_s: float = TICK_S,
    policies: NodeTypePolicies | None = None,
) -> None:
    """Fire due schedules every `tick_s`; a workflow using a node type `policies` disable
    is not started (its ticks pass) until the type is enabled again."""
    while True:
        try:
            policy = EMPTY if policies is None else policies.current
            for execution in await schedules.fire_due(database, utcnow(), policy=policy):
                await submit(execution)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("firing schedules failed; trying again")
        await asyncio.sleep(tick_s)
