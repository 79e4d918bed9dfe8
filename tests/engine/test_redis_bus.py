"""The Redis event bus on the real test Redis: what one process publishes reaches another
process's fanout in order; when the reader loses Redis, every subscriber is told to re-read
the database."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from engine.bus import EventFanout
from engine.events import ErrorInfo, Event, EventType
from engine.redis_bus import RedisEventPublisher, RedisEventReader
from tests.polling import until

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def event(execution_id: str, sequence: int, type: EventType = EventType.NODE_STARTED) -> Event:
    return Event(
        execution_id,
        sequence,
        type,
        datetime.now(UTC),
        node_id="n",
        node_name="N",
        attempt=1,
        error=ErrorInfo("X", "went wrong", {"field": "url"}),
        preview={"a": [1, 2]},
    )


@contextlib.asynccontextmanager
async def reading(
    redis: Redis, redis_url: str, fanout: EventFanout, block_ms: int = 200, **client: Any
) -> AsyncIterator[tuple[str, RedisEventReader]]:
    """A reader on a fresh stream, running until the block ends; yields the stream's name."""
    stream_name = f"loom:test-events:{uuid.uuid4().hex}"
    reader_redis = Redis.from_url(redis_url, **client)
    reader = RedisEventReader(reader_redis, fanout, stream=stream_name, block_ms=block_ms)
    task = asyncio.create_task(reader.run_forever())
    try:
        await asyncio.wait_for(reader.ready.wait(), 5)
        yield stream_name, reader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reader_redis.aclose()
        await redis.delete(stream_name)


async def _until(condition: object, within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_published_events_reach_another_process_in_order(
    redis: Redis, redis_url: str
) -> None:
    fanout = EventFanout()
    async with reading(redis, redis_url, fanout) as (stream_name, _):
        publisher = RedisEventPublisher(redis, stream=stream_name)
        publisher.start()
        try:
            stream = fanout.open("x1")
            other = fanout.open("x2")
            sent = [event("x1", sequence) for sequence in range(1, 51)]
            for start in range(0, 50, 7):
                publisher.publish(sent[start : start + 7])
                await asyncio.sleep(0)
            await _until(lambda: len(stream.items) == 50)
        finally:
            await publisher.stop()
    received = list(stream.items)
    assert [e.sequence for e in received] == list(range(1, 51))
    assert received[0].to_json() == sent[0].to_json()
    assert not other.items and not other.woken


async def test_a_reader_that_lost_redis_wakes_every_subscriber(
    redis: Redis, redis_url: str
) -> None:
    fanout = EventFanout()
    name = f"loom-test-reader-{uuid.uuid4().hex[:8]}"
    async with reading(redis, redis_url, fanout, block_ms=5000, client_name=name) as (
        stream_name,
        _,
    ):
        stream = fanout.open("x1")

        async def reader_blocked() -> list[dict[str, Any]]:
            return [
                connection
                for connection in await redis.client_list()
                if connection["name"] == name and "b" in connection["flags"]
            ]

        # The reader's connection, blocked in XREAD, goes away (a Redis restart, a cut).
        for connection in await until(reader_blocked, what="the reader blocked in XREAD"):
            await redis.client_kill_filter(_id=connection["id"])
        await _until(lambda: stream.woken, within_s=10)
        # And it reads again afterwards.
        publisher = RedisEventPublisher(redis, stream=stream_name)
        publisher.start()
        publisher.publish([event("x1", 1)])
        await _until(lambda: len(stream.items) == 1)
        await publisher.stop()


async def test_a_malformed_entry_does_not_stop_the_reader(redis: Redis, redis_url: str) -> None:
    fanout = EventFanout()
    async with reading(redis, redis_url, fanout) as (stream_name, reader):
        publisher = RedisEventPublisher(redis, stream=stream_name)
        try:
            stream = fanout.open("x1")
            for garbage in (b"not json", b"[1]", b'{"events": [], "wake": [1, {"a": 2}]}'):
                await redis.xadd(stream_name, {"m": garbage})
            await redis.xadd(stream_name, {"other": b"field"})
            publisher.start()
            publisher.publish([event("x1", 1)])
            await _until(lambda: len(stream.items) == 1)
            assert reader.entries == 5
        finally:
            await publisher.stop()


async def test_events_a_publisher_could_not_send_become_wake_ups(
    redis: Redis, redis_url: str
) -> None:
    fanout = EventFanout()
    async with reading(redis, redis_url, fanout) as (stream_name, _):
        unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
        publisher = RedisEventPublisher(unreachable, stream=stream_name)
        publisher.start()
        try:
            stream = fanout.open("x1")
            publisher.publish([event("x1", 1), event("x1", 2)])
            await _until(lambda: publisher.dropped == 2)
            # Redis is back: the subscribers of what was dropped read it from the database.
            publisher.redis = redis
            publisher.publish([])
            await _until(lambda: stream.woken, within_s=10)
            assert not stream.items
        finally:
            await publisher.stop()
            await unreachable.aclose()
