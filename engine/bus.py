"""The live tail of execution events: committed events and wake-ups, fanned out to the
subscribers of this process.

```
writer commits --> EventPublisher.publish(events) --> EventFanout (this process)
(storage/recorder.py: records, creations,            embedded: directly
 claims, cancellations)                              distributed: through Redis
                                                     (engine/redis_bus.py), so every
                                                     API process sees every worker's
EventFanout --> ExecutionStream (one per subscriber) --> resolvers/subscriptions.py
            --> UpdateStream (one per process) --> resolvers/updates_feed.py (executionUpdates)
```

Every event is committed by the group-commit writer and published by it, once committed,
from one place. The database holds the history; the bus only carries what was committed, as
a hint. A subscriber reads the history first, then the live tail, and goes back to the
database whenever the tail cannot be trusted: a gap in the sequence, its buffer overflowed,
or the bus lost messages. That last is the one use of a wake-up (`EventFanout.wake`,
`wake_all`): in distributed mode, events the Redis publisher had to drop (Redis unreachable,
or too many pending) are replaced by a wake-up of their executions' subscribers, and a
reader that could not read for a while wakes them all. So a slow subscriber never slows the
engine (its buffer is bounded) and never misses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from engine.errors import EngineError
from engine.events import Event, EventType

logger = logging.getLogger("loom.bus")

# Events that change an execution's status: what `executionUpdates` streams.
STATUS_EVENTS = frozenset(
    {
        EventType.EXECUTION_QUEUED,
        EventType.EXECUTION_STARTED,
        EventType.EXECUTION_WAITING,
        EventType.EXECUTION_RESUMED,
        EventType.EXECUTION_FINISHED,
    }
)


class EventPublisher(Protocol):
    """Where committed events go (never before their commit)."""

    def publish(self, events: Sequence[Event]) -> None:
        """Hand over committed events; never blocks."""
        ...


class ExecutionStream:
    """The live events of one execution for one subscriber, in a bounded buffer.

    `overflowed` or `woken` tell the subscriber to read from the database instead: what
    the buffer dropped is stored there.
    """

    def __init__(self, execution_id: str, capacity: int) -> None:
        self.execution_id = execution_id
        self.capacity = capacity
        self.items: deque[Any] = deque()
        self.overflowed = False
        self.woken = False
        self._ready = asyncio.Event()

    def put(self, item: Any) -> None:
        if self.overflowed:
            return
        if len(self.items) >= self.capacity:
            self.overflowed = True
            self.items.clear()
        else:
            self.items.append(item)
        self._ready.set()

    def wake(self) -> None:
        self.woken = True
        self._ready.set()

    async def wait(self, timeout_s: float) -> bool:
        """Wait for something to read; False when `timeout_s` passed without anything."""
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return False
        self._ready.clear()
        return True

    def reset(self) -> None:
        """The subscriber is about to read the database: what is buffered is in there."""
        self.items.clear()
        self.overflowed = False
        self.woken = False


class UpdateStream:
    """Ids of executions whose status may have changed, for the reader that serves this
    process's `executionUpdates` subscribers; each id once until read, at most `capacity`
    ids. `resync` says that some were lost (the buffer overflowed, or the bus lost
    messages): the reader checks everything its subscribers show."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.execution_ids: dict[str, None] = {}
        self.resync = False
        self._ready = asyncio.Event()

    def put(self, execution_id: str) -> None:
        if len(self.execution_ids) >= self.capacity and execution_id not in self.execution_ids:
            self.resync = True
        else:
            self.execution_ids[execution_id] = None
        self._ready.set()

    def lost(self) -> None:
        self.resync = True
        self._ready.set()

    async def take(self, timeout_s: float) -> tuple[list[str], bool]:
        """The ids gathered since the last call (waiting up to `timeout_s` for one), and
        whether the subscriber must check everything it shows."""
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
        self._ready.clear()
        taken = list(self.execution_ids)
        self.execution_ids.clear()
        resync, self.resync = self.resync, False
        return taken, resync


class SubscriptionLimitError(EngineError):
    """This process serves as many subscriptions as it is allowed to."""


class EventFanout:
    """Hands the events of this process's bus to its subscribers.

    `shared` turns an engine event into what subscribers receive, once per event whatever
    the number of subscribers (the GraphQL layer passes its event type's constructor).
    """

    def __init__(
        self,
        *,
        capacity: int = 1000,
        max_subscriptions: int = 10_000,
        shared: Callable[[Event], Any] = lambda event: event,
    ) -> None:
        self.capacity = capacity
        self.max_subscriptions = max_subscriptions
        self._shared = shared
        self._streams: dict[str, set[ExecutionStream]] = {}
        self._updates: set[UpdateStream] = set()
        self.subscriptions = 0

    # Subscribers

    def open(self, execution_id: str) -> ExecutionStream:
        self.admit()
        stream = ExecutionStream(execution_id, self.capacity)
        self._streams.setdefault(execution_id, set()).add(stream)
        return stream

    def open_updates(self, capacity: int = 10_000) -> UpdateStream:
        """Status changes, for the one reader that serves every `executionUpdates`
        subscriber of this process (which `admit` counts one by one)."""
        stream = UpdateStream(capacity)
        self._updates.add(stream)
        return stream

    def close(self, stream: ExecutionStream | UpdateStream) -> None:
        if isinstance(stream, UpdateStream):
            self._updates.discard(stream)
            return
        streams = self._streams.get(stream.execution_id)
        if streams is not None and stream in streams:
            streams.discard(stream)
            self.release()
            if not streams:
                del self._streams[stream.execution_id]

    def admit(self) -> None:
        """Count one more subscription, or refuse it past `max_subscriptions`."""
        if self.subscriptions >= self.max_subscriptions:
            raise SubscriptionLimitError(
                f"this server already serves {self.max_subscriptions} subscriptions"
            )
        self.subscriptions += 1

    def release(self) -> None:
        self.subscriptions -= 1

    # The bus side

    def deliver(self, events: Sequence[Event]) -> None:
        """Committed events, in commit order."""
        for event in events:
            streams = self._streams.get(event.execution_id)
            if streams:
                shared = self._shared(event)
                for stream in streams:
                    stream.put(shared)
            if self._updates and event.type in STATUS_EVENTS:
                for updates in self._updates:
                    updates.put(event.execution_id)

    def wake(self, execution_ids: Iterable[str]) -> None:
        """Events of these executions may have been lost on the way (the Redis publisher
        dropped them): their subscribers read the database."""
        for execution_id in execution_ids:
            for stream in self._streams.get(execution_id, ()):
                stream.wake()
            for updates in self._updates:
                updates.put(execution_id)

    def wake_all(self) -> None:
        """The bus may have lost messages: every subscriber checks the database."""
        for streams in self._streams.values():
            for stream in streams:
                stream.wake()
        for updates in self._updates:
            updates.lost()
        logger.warning("live events may have been lost; subscribers re-read the database")


class LocalPublisher:
    """Embedded mode: the writer's commits go straight to this process's subscribers."""

    def __init__(self, fanout: EventFanout) -> None:
        self.fanout = fanout

    def publish(self, events: Sequence[Event]) -> None:
        self.fanout.deliver(events)
