"""What a log line is about: the request, execution, workflow, node and attempt in hand.

Set where the API handles a request (server/telemetry.py) and where the engine runs an
execution and a node (engine/tracing.py); read by `LogContextFilter`, which puts the fields
on every record so that the JSON log format (LOOM_LOG_FORMAT=json) writes them. The values
are identifiers only, never data. Context variables follow asyncio tasks: a node's task sees
its execution's fields, and fields bound in one task never leak into another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

# The names a record may carry, in the order the JSON format writes them.
FIELDS = ("request_id", "execution_id", "workflow_id", "node_id", "attempt")

_bound: ContextVar[dict[str, Any]] = ContextVar("loom_log_context", default={})  # noqa: B039 (never mutated: replaced)


def current() -> dict[str, Any]:
    """The fields bound here now (do not mutate)."""
    return _bound.get()


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind `fields` (of `FIELDS`) for the code inside, on top of what is bound already."""
    token = _bound.set(_bound.get() | fields)
    try:
        yield
    finally:
        _bound.reset(token)


def bind(**fields: Any) -> None:
    """Bind `fields` for the rest of the current task (a request's own task)."""
    _bound.set(_bound.get() | fields)


def start_task(
    coroutine: Coroutine[Any, Any, T], *, name: str, request: bool = False
) -> asyncio.Task[T]:
    """A task that does not inherit the caller's context (its bound ids, its current span):
    an execution's run or a long-lived background task, which outlives whatever started it.
    With `request`, the caller's request id goes on, if a request (not a run) started it."""
    context = Context()
    current = _bound.get()
    if request and current.get("request_id") and not current.get("execution_id"):
        context.run(_bound.set, {"request_id": current["request_id"]})
    return asyncio.create_task(coroutine, name=name, context=context)


class LogContextFilter(logging.Filter):
    """Puts the bound fields (and, with `ids`, the current trace and span ids) on each record."""

    def __init__(self, ids: Callable[[], tuple[str, str] | None] | None = None) -> None:
        super().__init__()
        self.ids = ids

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _bound.get().items():
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        if self.ids is not None:
            found = self.ids()
            if found is not None:
                record.trace_id, record.span_id = found
        return True
