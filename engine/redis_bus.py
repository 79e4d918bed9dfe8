"""The event bus across processes (distributed mode): one capped Redis stream.

Each process that commits events (workers; API processes for creations and cancellations)
appends one stream entry per commit: its events, and wake-ups for events it had to drop,
JSON. Each API process reads
the stream from where it joined and hands every entry to its own `EventFanout`, which keeps
only what its subscribers want. One stream for all executions keeps the Redis work per
event constant however many API processes and subscribers there are, and keeps each
execution's events in commit order.

Redis is a hint, not the record: when a reader could not read for a while (Redis restarted
or unreachable), it tells every subscriber to re-read the database once it reads again, and
a publisher that could not append wakes the subscribers of the executions it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from engine import log_context
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
_MAX_RETRY_DELAY_S = 5.0


def _dumps(message: Any) -> bytes:
    """orjson, or the standard library for integers beyond 64 bits (a preview may hold
    any JSON), which orjson refuses."""
    try:
        return orjson.dumps(message)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(message, separators=(",", ":")).encode()


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
            self._drop(len(self._events) - MAX_PENDING_EVENTS)
        self._ready.set()

    def _drop(self, count: int) -> None:
        """Let go of the oldest `count` events; their subscribers are woken instead (and
        read them from the database)."""
        dropped, self._events = self._events[:count], self._events[count:]
        self.dropped += len(dropped)
        self._wakes.update(dict.fromkeys(event["executionId"] for event in dropped))

    def start(self) -> None:
        if self._task is None:
            self._task = log_context.start_task(self._run(), name="loom-event-publisher")

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
        failures = 0
        while True:
            await self._ready.wait()
            self._ready.clear()
            try:
                await self._send()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.warning("publishing live events failed; retrying", exc_info=True)
                self._ready.set()
                await asyncio.sleep(min(_RETRY_DELAY_S * 2 ** (failures - 1), _MAX_RETRY_DELAY_S))

    async def _send(self) -> None:
        if not self._events and not self._wakes:
            return
        events, self._events = self._events, []
        wakes, self._wakes = self._wakes, {}
        entry = _dumps({"events": events, "wake": list(wakes)})
        try:
            await self.redis.xadd(
                self.stream, {"m": entry}, maxlen=STREAM_MAX_ENTRIES, approximate=True
            )
        except BaseException:
            # Not sent: the events are dropped (they are stored), their subscribers woken on
            # the next send.
            self.dropped += len(events)
            self._wakes.update(wakes)
            self._wakes.update(dict.fromkeys(event["executionId"] for event in events))
            raise


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
        failures = 0
        while True:
            try:
                if self.last_id == "$":
                    # Start after the newest entry, by id, so that a reconnection resumes
                    # exactly there.
                    newest = await self.redis.xrevrange(self.stream, count=1)
                    self.last_id = newest[0][0].decode() if newest else "0-0"
                self.ready.set()
                reply = await self.redis.xread(
                    {self.stream: self.last_id}, count=1000, block=self.block_ms
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                logger.warning("reading live events from Redis failed; retrying", exc_info=True)
                await asyncio.sleep(min(_RETRY_DELAY_S * 2 ** (failures - 1), _MAX_RETRY_DELAY_S))
                continue
            if failures:
                # Reading again after an outage: what was published meanwhile may be lost.
                failures = 0
                self.fanout.wake_all()
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.last_id = entry_id.decode()
                    self.entries += 1
                    try:
                        self._deliver(fields)
                    except Exception:
                        logger.exception("delivering live event entry %s failed", self.last_id)

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        try:
            message = orjson.loads(fields[b"m"])
            events = [Event.from_json(data) for data in message["events"]]
            wakes = [
                execution_id for execution_id in message["wake"] if isinstance(execution_id, str)
            ]
        except (KeyError, ValueError, TypeError):
            logger.warning("ignoring a malformed live event entry")
            return
        if events:
            self.fanout.deliver(events)
        if wakes:
            self.fanout.wake(wakes)
