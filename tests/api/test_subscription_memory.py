"""A long-lived subscription runs in flat memory: nothing kept per event it sent."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime

from engine.events import Event, EventType
from server.app import create_app
from tests.api.test_executions import create, execute
from tests.api.test_subscriptions import (
    history_while_waiting,
    long_wait_workflow,
    served,
    until,
)
from tests.conftest import Caller
from tests.live import raw_subscription

EVENTS = "subscription($id: ID!) { executionEvents(executionId: $id) { sequence type nodeId } }"
WARM_UP = 1000
MEASURED = 3000
# Per event sent; graphql-core 3.3.2 alone kept about 1 KB per event of one subscription.
MAX_GROWTH_BYTES_PER_EVENT = 64


async def test_memory_stays_flat_over_thousands_of_events_of_one_subscription(
    database, settings, registry, alice: Caller
) -> None:
    app = create_app(settings, database=database, registry=registry)
    async with served(app, alice) as (url, alice):
        fanout = app.state.services.fanout
        workflow_id = await create(alice, *long_wait_workflow())
        execution_id = str((await execute(alice, workflow_id))["id"])
        await until(lambda: fanout.subscriptions == 0)
        history = await history_while_waiting(database, execution_id)
        async with raw_subscription(url, alice.token, EVENTS, {"id": execution_id}) as stream:
            # The history the execution has so far (it waits 30 s now), then live events
            # delivered as if a worker had committed them.
            await until(lambda: stream.received >= history)
            last = stream.received

            async def deliver(count: int) -> None:
                nonlocal last
                for start in range(0, count, 100):
                    batch = [
                        Event(
                            execution_id=execution_id,
                            sequence=last + i + 1,
                            type=EventType.NODE_STARTED,
                            at=datetime.now(UTC),
                            node_id="wait",
                            node_name="Wait",
                            attempt=1,
                        )
                        for i in range(min(100, count - start))
                    ]
                    fanout.deliver(batch)
                    last += len(batch)
                    await until(lambda: stream.received >= last, within_s=30)

            tracemalloc.start()
            try:
                await deliver(WARM_UP)
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                await deliver(MEASURED)
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            assert stream.errors == []
        await app.state.services.submitter.cancel(execution_id)
    growth = after - before
    assert growth < MEASURED * MAX_GROWTH_BYTES_PER_EVENT, (
        f"memory grew by {growth} bytes over {MEASURED} events"
    )
