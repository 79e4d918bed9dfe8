"""Waiting in tests: on a condition, never for a fixed time (a machine under load is slow)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def until(
    condition: Callable[[], Any],
    within_s: float = 10.0,
    interval_s: float = 0.02,
    what: str = "the condition",
) -> Any:
    """Call `condition` (plain or async) until it returns something true, and return that.
    Fails the test after `within_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not hold within {within_s} s (last: {value!r})")
        await asyncio.sleep(interval_s)
