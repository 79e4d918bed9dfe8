"""With tracing off (the default) a run records nothing and pays for nothing: the API has
no observation middleware and an execution stores no trace context."""

from __future__ import annotations

from typing import Any

from engine import tracing
from server import telemetry
from storage.db import Database
from tests.api.test_executions import create, execute, finished
from tests.conftest import Caller
from tests.factories import edge, node
from tests.tracing_helpers import stored_traceparent


async def test_with_tracing_off_nothing_is_recorded_or_stored(
    app: Any, alice: Caller, database: Database, settings: Any
) -> None:
    assert not tracing.enabled()
    assert telemetry.middleware(settings) == []
    assert tracing.current_traceparent() is None
    workflow_id = await create(
        alice, [node("start", "Start", "manual_trigger"), node("a", "A")], [edge("start", "a")]
    )
    started = await execute(alice, workflow_id)
    assert (await finished(app, alice, started["id"]))["status"] == "SUCCEEDED"
    stored = await stored_traceparent(database, started["id"])
    assert stored is None
