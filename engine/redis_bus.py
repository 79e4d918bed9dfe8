"""The event bus across processes (distributed mode): one capped Redis stream.

Each process that commits events (workers; API processes for cancellations) appends one
stream entry per commit round: the round's events and wake-ups, JSON. Each API process reads
the stream from where it joined and hands every entry to its own `EventFanout`, which keeps
only what its subscribers want. One stream for all executions keeps the Redis work per
event constant however many API processes and subscribers there are, and keeps each
execution's events in commit order.

Redis is a hint, not the record: if it loses entries (a restart, `FLUSHALL`, a reader that
fell behind the cap), the reader tells every subscriber to re-read the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from engine.bus import EventFanout
from engine.events import Event

logger = logging.getLogger("loom.bus")

EVENTS_STREAM = "loom:events"
# Entries kept (approximately): minutes of history at full load, a few MB.
STREAM_MAX_ENTRIES = 50_000
# Events waiting for Redis beyond this are dropped (subscribers read them from the
# database): a Redis outage must not grow a worker's memory.
MAX_PENDING_EVENTS = 100_000
_RETRY_DELAY_S = 0.5


class RedisEventPublisher:
    """`EventPublisher` appending to the stream, one entry per batch, from its own task so
    that the writer never waits for Redis."""

    def __init__(self, redis: Redis, stream: str = EVENTS_STREAM) -> None:
        self.redis = redis
        self.stream = stream
        self._events: list[dict[str, Any]] = []
        self._wakes: dict[str, None] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def publish(self, events: Sequence[Event]) -> None:
        self._events.extend(event.to_json() for event in events)
        if len(self._events) > MAX_PENDING_EVENTS:
            excess = len(self._events) - MAX_PENDING_EVENTS
            del self._events[:excess]
            self.dropped += excess
        self._ready.set()

    def wake(self, execution_ids: Iterable[str]) -> None:
        self._wakes.update(dict.fromkeys(execution_ids))
        self._ready.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loom-event-publisher")

    async def stop(self) -> None:
        """Stop, then send what is pending (briefly)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._send()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self._send()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Dropped: subscribers find these events in the database (the readers
                # notice the outage and tell them to).
                logger.warning("publishing live events failed", exc_info=True)
                await asyncio.sleep(_RETRY_DELAY_S)

    async def _send(self) -> None:
        if not self._events and not self._wakes:
            return
        events, self._events = self._events, []
        wakes, self._wakes = list(self._wakes), {}
        entry = orjson.dumps({"events": events, "wake": wakes})
        self.dropped += len(events)  # until sent
        await self.redis.xadd(
            self.stream, {"m": entry}, maxlen=STREAM_MAX_ENTRIES, approximate=True
        )
        self.dropped -= len(events)


class RedisEventReader:
    """Reads the stream into this process's fanout, from the moment it starts."""

    def __init__(
        self,
        redis: Redis,
        fanout: EventFanout,
        stream: str = EVENTS_STREAM,
        block_ms: int = 5000,
    ) -> None:
        self.redis = redis
        self.fanout = fanout
        self.stream = stream
        self.block_ms = block_ms
        self.last_id = "$"
        self.entries = 0
        self.ready = asyncio.Event()

    async def run_forever(self) -> None:
        trusted = True
        while True:
            try:
                if self.last_id == "$":
                    # Start after the newest entry, by id, so that a reconnection resumes
                    # exactly there.
                    newest = await self.redis.xrevrange(self.stream, count=1)
                    self.last_id = newest[0][0].decode() if newest else "0-0"
                if not trusted:
                    self.fanout.wake_all()
                    trusted = True
                self.ready.set()
                reply = await self.redis.xread(
                    {self.stream: self.last_id}, count=1000, block=self.block_ms
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("reading live events from Redis failed; retrying", exc_info=True)
                trusted = False
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = entry_id.decode()
                    self.entries += 1
                    self._deliver(fields)

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        try:
            message = orjson.loads(fields[b"m"])
            events = [Event.from_json(data) for data in message["events"]]
            wakes = message["wake"]
        except (KeyError, ValueError, TypeError):
            logger.warning("ignoring a malformed live event entry")
            return
        if events:
            self.fanout.deliver(events)
        if wakes:
            self.fanout.wake(wakes)
