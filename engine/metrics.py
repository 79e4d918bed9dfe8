"""Prometheus metrics of this process: what its executions, queue, leases, writer, event loop
and endpoints do (docs/operations.md, "Metrics", lists every one).

Off by default. `enable` (called by `loom serve` and `loom worker` when `LOOM_METRICS_TOKEN`
or `LOOM_METRICS_PORT` is set) imports `prometheus_client` and creates the metrics; until
then every function below checks one module global and returns, so the instrumented code
pays nothing measurable and the library is never imported (start-up cost, issue 14).

Each process keeps its own registry and serves it itself (its API port, or its own metrics
port): Loom runs one process of each kind per `loom` command (uvicorn with one worker; one
`loom worker` per process), so prometheus_client's multiprocess mode, with its files and
their clean-up, is not needed. Prometheus scrapes each process as a target.

Labels are bounded: node types (workspace-defined declarative types count as one,
`declarative`), modes, statuses, status classes, table names. Never an execution id; a
workflow id only when `workflow_labels` is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from engine.declarative import is_declarative

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

PREFIX = "loom_"
_SECONDS_SHORT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# From 0.1 ms: most node runs (transforms) and pick-ups take less than 1 ms.
_SECONDS_LONG = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    1800,
    3600,
)
_BATCH_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class _Metrics:
    """The metrics of one process, in their own registry."""

    def __init__(self, role: str, version: str, workflow_labels: bool) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.process_collector import ProcessCollector

        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        self.workflow_labels = workflow_labels
        by_workflow = ("workflow_id",) if workflow_labels else ()

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Any:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=registry)

        info = gauge(
            "process_info", "This process: its role and Loom version.", ("role", "version")
        )
        info.labels(role, version).set(1)
        self.started = counter(
            "executions_started", "Executions that began running here.", ("mode", *by_workflow)
        )
        self.finished = counter(
            "executions_finished",
            "Executions that ended here, by final status.",
            ("mode", "status", *by_workflow),
        )
        self.execution_s = histogram(
            "execution_duration_seconds",
            "From claim to end of executions that ended here (after a durable wait: from the "
            "resume).",
            _SECONDS_LONG,
            ("mode", "status"),
        )
        self.node_runs = counter(
            "node_runs", "Node runs (attempts) that ended here.", ("node_type", "status")
        )
        self.node_run_s = histogram(
            "node_run_duration_seconds", "Node run durations.", _SECONDS_LONG, ("node_type",)
        )
        # Sampled from the database, which every process shares: only API processes export
        # them (a sum over every target would multiply them, and every process would query).
        self.queue_depth: Any = None
        self.oldest_queued_s: Any = None
        self.executions_by_status: Any = None
        if role == "api":
            self.queue_depth = gauge("queue_depth", "QUEUED executions (sampled).")
            self.oldest_queued_s = gauge(
                "queue_oldest_age_seconds",
                "Age of the oldest QUEUED execution; 0 if none (sampled).",
            )
            self.executions_by_status = gauge(
                "executions", "RUNNING and WAITING executions (sampled).", ("status",)
            )
        self.pick_up_s = histogram(
            "pick_up_latency_seconds",
            "From a job being due on the queue to a worker starting it.",
            _SECONDS_LONG,
        )
        self.leases_held = gauge("leases_held", "Execution leases this process holds.")
        self.leases_lost = counter(
            "leases_lost", "Runs stopped here because another process took their lease."
        )
        self.leases_expired = counter(
            "leases_expired", "Executions claimed here after their holder's lease had expired."
        )
        self.batch_size = histogram(
            "group_commit_batch_size", "Records per group-commit transaction.", _BATCH_SIZES
        )
        self.commit_s = histogram(
            "group_commit_seconds", "Duration of group-commit transactions.", _SECONDS_SHORT
        )
        self.loop_lag_s = histogram(
            "event_loop_lag_seconds", "How late the event loop ran a timer.", _SECONDS_SHORT
        )
        self.subscriptions = gauge("subscriptions", "Live GraphQL subscriptions.")
        self.websockets = gauge("websocket_connections", "Open GraphQL websockets.")
        self.webhooks = counter(
            "webhook_requests", "Webhook requests answered, by HTTP status.", ("status",)
        )
        self.http_calls = counter(
            "http_request_node_calls",
            "Calls of HTTP Request nodes, by status class (1xx to 5xx, or error: no answer, "
            "also a call cut off by a timeout or a cancel).",
            ("status_class",),
        )
        self.pruned = counter("pruned_rows", "Rows deleted by retention, by table.", ("table",))
        # (node type, status): its node runs' counter and duration histogram.
        self.node_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.samples = counter(
            "status_samples_failed", "Background samples of the database that failed."
        )


_live: _Metrics | None = None


def enable(role: str, version: str, *, workflow_labels: bool = False) -> CollectorRegistry:
    """Create this process's metrics (once; a second call returns the same registry)."""
    global _live
    if _live is None:
        _live = _Metrics(role, version, workflow_labels)
    return _live.registry


def disable() -> None:
    """Forget the metrics (tests): recording becomes free again."""
    global _live
    _live = None


def registry() -> CollectorRegistry | None:
    return None if _live is None else _live.registry


def enabled() -> bool:
    return _live is not None


def _node_type_label(name: str) -> str:
    return "declarative" if is_declarative(name) else name


# Recording. Each returns at once while metrics are off.


def execution_started(mode: str, workflow_id: str) -> None:
    if _live is not None:
        _live.started.labels(mode, *((workflow_id,) if _live.workflow_labels else ())).inc()


def execution_finished(mode: str, status: str, workflow_id: str, duration_s: float) -> None:
    if _live is not None:
        by_workflow = (workflow_id,) if _live.workflow_labels else ()
        _live.finished.labels(mode, status, *by_workflow).inc()
        _live.execution_s.labels(mode, status).observe(duration_s)


def node_run_finished(node_type: str, status: str, duration_ms: float | None) -> None:
    if _live is not None:
        # The children of the labels, kept: `labels()` costs more than the update itself.
        label = _node_type_label(node_type)
        children = _live.node_children.get((label, status))
        if children is None:
            children = (_live.node_runs.labels(label, status), _live.node_run_s.labels(label))
            _live.node_children[label, status] = children
        children[0].inc()
        if duration_ms is not None:
            children[1].observe(duration_ms / 1000)


def picked_up(latency_s: float) -> None:
    if _live is not None:
        _live.pick_up_s.observe(max(0.0, latency_s))


def lease_lost() -> None:
    if _live is not None:
        _live.leases_lost.inc()


def lease_expired() -> None:
    if _live is not None:
        _live.leases_expired.inc()


def group_commit(records: int, duration_s: float) -> None:
    if _live is not None:
        _live.batch_size.observe(records)
        _live.commit_s.observe(duration_s)


def loop_lag(lag_s: float) -> None:
    if _live is not None:
        _live.loop_lag_s.observe(lag_s)


@contextmanager
def websocket_open() -> Iterator[None]:
    """Count an open websocket for the duration of the block."""
    if _live is None:
        yield
        return
    gauge = _live.websockets
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


# Webhook statuses counted by their code; any other (a Respond to Webhook node may answer
# any code from 100 to 599, from an expression) by its class ("4xx"), so the label stays
# bounded.
_WEBHOOK_STATUSES = frozenset(
    {200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410}
    | {413, 415, 422, 429, 500, 502, 503, 504}
)


def webhook_answered(status: int) -> None:
    if _live is not None:
        label = str(status) if status in _WEBHOOK_STATUSES else f"{status // 100}xx"
        _live.webhooks.labels(label).inc()


def http_node_called(status: int | None) -> None:
    """One call of an HTTP Request node: its response's status, None if none came."""
    if _live is not None:
        label = "error" if status is None else f"{status // 100}xx"
        _live.http_calls.labels(label).inc()


def record_pruned(counts: Mapping[str, int]) -> None:
    """Rows that retention deleted, by table (storage.retention's `on_pruned`)."""
    if _live is not None:
        for table, count in counts.items():
            if count:
                _live.pruned.labels(table).inc(count)


def execution_counts(
    queued: int, oldest_queued_at: float | None, running: int, waiting: int
) -> None:
    """A sample of the database's executions (`oldest_queued_at`: a Unix time)."""
    if _live is not None and _live.queue_depth is not None:
        _live.queue_depth.set(queued)
        age = 0.0 if oldest_queued_at is None else max(0.0, time.time() - oldest_queued_at)
        _live.oldest_queued_s.set(age)
        _live.executions_by_status.labels("RUNNING").set(running)
        _live.executions_by_status.labels("WAITING").set(waiting)


def sample_failed() -> None:
    if _live is not None:
        _live.samples.inc()


def watch_subscriptions(read: Callable[[], float]) -> None:
    """Read the number of live subscriptions from `read` at each scrape."""
    if _live is not None:
        _live.subscriptions.set_function(read)


def watch_leases(read: Callable[[], float]) -> None:
    """Read the number of leases held from `read` at each scrape."""
    if _live is not None:
        _live.leases_held.set_function(read)
