"""Traces (OpenTelemetry): off unless a process installs a tracer provider.

With tracing off nothing here imports OpenTelemetry, and what the engine calls per execution
and per node is a shared no-op. With it on (`LOOM_TRACING=otlp`, server/telemetry.py):

    API request span (server/telemetry.py, or the caller's traceparent)
      `- loom.execution          one per run of an execution, on whichever process runs it
           |- loom.node          one per node attempt (type, id, attempt, status, items)
           |    `- HTTP calls    the HTTP Request node sends `traceparent` (engine/http_client.py)
           `- loom.node ...

An execution's creator (a request, a webhook, a node calling a sub-workflow) is stored with
it as a W3C `traceparent` (`current_traceparent`, column `executions.traceparent`): every run
of it, the first and each resume after a durable wait or a lost worker, on any process, is a
child of that context, so the arq hop and the waits need nothing in the job itself. A
scheduled execution has no creator span: its runs start traces of their own.

Span attributes are identifiers, types, counts and statuses: never item data, parameter or
header values, credentials, or GraphQL query text and variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Literal

from engine import log_context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from engine.events import NodeRunState
    from engine.runner import LoadedExecution
    from engine.states import ExecutionStatus

TRACEPARENT = "traceparent"
SpanKindName = Literal["INTERNAL", "SERVER"]
# One object for every "nothing to do": entering it costs next to nothing.
_NOTHING = contextlib.nullcontext()

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
# Whether the engine binds log context (set with the JSON log format).
_log_context = False


def enabled() -> bool:
    """Whether this process records spans."""
    return _tracer is not None


def bind_log_context(on: bool) -> None:
    """Whether executions and nodes bind their ids for log records (the JSON log format)."""
    global _log_context
    _log_context = on


def new_provider(process: str) -> TracerProvider:
    """A tracer provider for this process (`api` or `worker`): the service is
    `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`), `loom` by default; sampling follows
    `OTEL_TRACES_SAMPLER` (everything by default)."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"loom.process": process})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "loom"}))
    # Not at exit: `shutdown` bounds how long a process ending waits for its collector.
    return TracerProvider(resource=resource, shutdown_on_exit=False)


def configure_otlp(process: str) -> None:
    """Export this process's spans over OTLP/HTTP in batches, to where the standard
    `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` says (http://localhost:4318 by default)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = new_provider(process)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)


def install(provider: TracerProvider | None) -> None:
    """Record spans through `provider` from now on (None: tracing off)."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("loom")


def shutdown(timeout_s: float | None = None) -> None:
    """Export what is pending and stop (a process ending). With `timeout_s`, return after
    that long even if the collector has not answered (the exporter retries a failing one for
    about 30 s, past an orchestrator's grace period); what is left is not exported."""
    provider = _provider
    install(None)
    if provider is None:
        return
    if timeout_s is None:
        provider.shutdown()
        return
    import threading

    stopping = threading.Thread(target=provider.shutdown, name="tracing shutdown", daemon=True)
    stopping.start()
    stopping.join(timeout_s)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span; None with tracing off or outside a span."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` to outgoing request headers, unless the request
    sets one itself (a user's header always wins)."""
    if _tracer is None or any(name.lower() == TRACEPARENT for name in headers):
        return
    traceparent = current_traceparent()
    if traceparent is not None:
        headers[TRACEPARENT] = traceparent


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids (hex), for log records; None outside a span."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any],
    *,
    parent: str | Mapping[str, str] | None = None,
    kind: SpanKindName = "INTERNAL",
    passing: tuple[type[BaseException], ...] = (),
    link: bool = False,
) -> Iterator[Span | None]:
    """A span named `name`, current inside; a child of `parent` (a traceparent, or request
    headers holding one) if given, else of the current span; with `link`, a new trace's root
    that only links to `parent` (a context an untrusted caller chose: neither its trace id
    nor its sampling decision is taken). Yields None with tracing off.
    An exception leaving it (but one of `passing`) marks it as an error, with the
    exception's type only."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind, StatusCode

    context = None
    links = []
    if parent is not None:
        carrier = {TRACEPARENT: parent} if isinstance(parent, str) else parent
        context = _propagator().extract(carrier)
        if link:
            linked = trace.get_current_span(context).get_span_context()
            links = [Link(linked)] if linked.is_valid else []
            context = Context()
    created = tracer.start_span(name, context, SpanKind[kind], attributes=attributes, links=links)
    try:
        with trace.use_span(created, record_exception=False, set_status_on_exception=False):
            yield created
    except passing:
        raise
    except BaseException as exc:
        created.set_attribute("error.type", type(exc).__name__)
        created.set_status(StatusCode.ERROR)
        raise
    finally:
        created.end()


def execution_run(loaded: LoadedExecution) -> contextlib.AbstractContextManager[Span | None]:
    """Around one run of an execution: its span (a child of its creator's `traceparent`;
    None with tracing off) and its ids bound for log records."""
    if _tracer is None and not _log_context:
        return _NOTHING
    return _execution_run(loaded)


@contextlib.contextmanager
def _execution_run(loaded: LoadedExecution) -> Iterator[Span | None]:
    attributes = {
        "loom.execution.id": loaded.execution_id,
        "loom.workflow.id": loaded.workflow_id,
        "loom.workspace.id": loaded.workspace_id,
        "loom.execution.mode": loaded.mode,
        "loom.workflow.version": loaded.version,
        "loom.execution.resumed": loaded.resumed,
    }
    with (
        log_ids(loaded),
        span(
            "loom.execution",
            attributes,
            parent=loaded.traceparent or {},
            passing=(asyncio.CancelledError,),
        ) as created,
    ):
        try:
            yield created
        except asyncio.CancelledError as exc:
            if created is not None:
                from engine.executor import INTERRUPTIONS
                from engine.states import ExecutionStatus

                reason = exc.args[0] if exc.args else None
                if reason in INTERRUPTIONS:  # a shutdown or lost lease: another run goes on
                    created.set_attribute("loom.execution.interrupted", str(reason))
                else:  # cancelled by a user
                    record_outcome(created, ExecutionStatus.CANCELLED)
            raise


def log_ids(loaded: LoadedExecution) -> contextlib.AbstractContextManager[None]:
    """The execution's ids bound for log records (and no node's: its run's own lines)."""
    if not _log_context:
        return _NOTHING
    return log_context.bound(
        execution_id=loaded.execution_id, workflow_id=loaded.workflow_id, node_id=None, attempt=None
    )


def record_outcome(created: Span | None, status: ExecutionStatus) -> None:
    """Note how an execution's run ended on its span (`execution_run`)."""
    if created is None:
        return
    from opentelemetry.trace import StatusCode

    from engine.states import ExecutionStatus

    created.set_attribute("loom.execution.status", status.value)
    if status is ExecutionStatus.FAILED:
        created.set_status(StatusCode.ERROR)


def node_run(node_type: str, state: NodeRunState) -> contextlib.AbstractContextManager[Any]:
    """Around one attempt of a node: its span (type, id, attempt; status and item counts
    when it ends) and its node id and attempt bound for log records."""
    if _tracer is None and not _log_context:
        return _NOTHING
    return _node_run(node_type, state)


@contextlib.contextmanager
def _node_run(node_type: str, state: NodeRunState) -> Iterator[None]:
    from engine.nodes.base import Suspend

    attributes = {
        "loom.node.type": node_type,
        "loom.node.id": state.node_id,
        "loom.node.attempt": state.attempt,
    }
    status: str | None = None
    with (
        log_context.bound(node_id=state.node_id, attempt=state.attempt),
        span("loom.node", attributes, passing=(Suspend,)) as created,
    ):
        try:
            yield
        except Suspend:
            status = "WAITING"  # a durable wait: the same attempt goes on when it resumes
            raise
        except asyncio.CancelledError:
            status = "CANCELLED"
            raise
        except Exception:
            status = "FAILED"  # the executor records it once this has ended
            raise
        finally:
            if created is not None:
                created.set_attribute("loom.node.status", status or state.status.value)
                if state.input_items is not None:
                    created.set_attribute("loom.node.items_in", state.input_items)
                if state.output_items is not None:
                    created.set_attribute("loom.node.items_out", state.output_items)


@functools.cache
def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()
