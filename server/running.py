"""What every process that runs executions shares, and what distributed mode requires.

Kept apart from `server.worker` so that an embedded `loom serve` does not import arq, Redis or
Alembic to run its executions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.executor import Outcome
from engine.runner import LoadedExecution
from engine.states import ExecutionStatus
from engine.submitter import Submitter
from resolvers.executions import wake_caller
from server.settings import Settings
from storage import queueing
from storage.db import Database


class DistributedModeError(Exception):
    """Distributed mode is misconfigured (a missing shared setting)."""


def require_distributed_settings(settings: Settings) -> str:
    """The Redis URL; refuses distributed mode without a shared secret key."""
    if not settings.redis_url:
        raise DistributedModeError("LOOM_REDIS_URL is not set: workers need Redis")
    if settings.secret_key is None or not settings.secret_key.get_secret_value():
        raise DistributedModeError(
            "LOOM_SECRET_KEY is not set: in distributed mode every process must share it"
        )
    return settings.redis_url


def after_run(
    database: Database, submitter: Submitter
) -> Callable[[LoadedExecution, Outcome], Awaitable[None]]:
    """What follows an execution's run: a WAITING one is handed to the queue for its resume
    time; one that ended gives its slot of `maxConcurrentExecutions` to the next."""

    async def on_finished(loaded: LoadedExecution, outcome: Outcome) -> None:
        if outcome.status is ExecutionStatus.WAITING:
            await submitter.submit(loaded.execution_id, loaded.generation, outcome.resume_at)
            # The sub-workflows it waits for may have ended before it was WAITING, when
            # their wake-up found it still running.
            for run_id in outcome.waiting_on_children:
                await wake_caller(database, submitter, loaded.execution_id, run_id)
            return
        if loaded.parent_waits and loaded.parent_execution_id and loaded.parent_run_id:
            await wake_caller(database, submitter, loaded.parent_execution_id, loaded.parent_run_id)
        if not loaded.settings.get("maxConcurrentExecutions"):
            return
        for due in await queueing.admit(database, loaded.workflow_id):
            await submitter.submit(due.execution_id, due.generation)

    return on_finished
