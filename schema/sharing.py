"""One execution of a subscription's selection per live payload, shared by its subscribers.

graphql-core runs a subscription's selection set once per event and subscriber; with a
hundred subscribers on one execution that is most of an API process's time (about 150 us
each). A live payload (an event, an execution whose status changed) reaches every
subscriber of this process as the same object, built once, so the result of the same
operation on it is the same whenever the variables the selection reads are the same: the
first subscriber computes it, the others send it, and its JSON is encoded once.

What is shared lives on the payload itself (`SharedResult`s in its `__dict__`): it goes
away with the payload, once every subscriber's buffer has let go of it, so a long-lived
subscription keeps nothing per event it sent.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import orjson
from graphql import ExecutionResult, Visitor, visit
from graphql.language import OperationDefinitionNode, VariableNode
from graphql.pyutils import is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Operations whose selection variables are remembered (the parser cache holds fewer).
_MAX_OPERATIONS = 4096
_RESULTS = "_loom_shared_results"


class Shareable:
    """Marks a subscription payload that is one object for all of its subscribers."""

    __slots__ = ()


class SharedResult:
    """One operation's result on one shared payload: pending until its first subscriber
    has computed it, then the data every other subscriber sends."""

    __slots__ = ("__weakref__", "_done", "_encoded", "_framed", "operation", "result")

    def __init__(self, operation: OperationDefinitionNode) -> None:
        self.operation = operation  # kept: its id stays its own while this lives
        self.result: ExecutionResult | None = None
        self._done = asyncio.Event()
        self._encoded: str | None = None
        self._framed: dict[str, bytes] | None = None

    @property
    def pending(self) -> bool:
        return not self._done.is_set()

    def settle(self, result: ExecutionResult | None) -> None:
        """The first subscriber's result, or None (it failed, was cancelled, or has errors,
        which are logged per subscriber): the others then compute their own."""
        if result is not None and not result.errors:
            self.result = result
            _BY_DATA[id(result.data)] = self
        self._done.set()

    async def wait(self) -> ExecutionResult | None:
        await self._done.wait()
        return self.result

    def json(self) -> str:
        if self._encoded is None:
            assert self.result is not None
            self._encoded = encode_json(self.result.data)
        return self._encoded

    def framed(self, head: str, frame: Callable[[str], bytes]) -> bytes:
        """The `next` message of this result after `head` (see `next_frame_head`), as
        `frame` puts it on the wire: built once per operation id, whatever the number of
        subscribers (clients mostly number their first operation alike)."""
        framed = self._framed
        if framed is None:
            framed = self._framed = {}
        found = framed.get(head)
        if found is None:
            found = framed[head] = frame(head + self.json() + "}}")
        return found


# Shared results by the id of their data, for `next_frame`; an entry goes with its payload.
_BY_DATA: weakref.WeakValueDictionary[int, SharedResult] = weakref.WeakValueDictionary()


class _Variables(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.names.add(node.name.value)


def _selection_variables(
    operation: OperationDefinitionNode, fragments: dict[str, Any]
) -> list[str]:
    """Variables the selection below the root field can read (the root field's arguments,
    such as `executionId` or `afterSequence`, do not change how a payload is resolved)."""
    collector = _Variables()
    for selection in operation.selection_set.selections:
        inner = getattr(selection, "selection_set", None)
        if inner is not None:
            visit(inner, collector)
    for fragment in fragments.values():
        visit(fragment, collector)
    return sorted(collector.names)


# Per parsed operation (the parser cache keeps them): the variables its selection reads.
_VARIABLES: OrderedDict[int, tuple[Any, list[str]]] = OrderedDict()


def variables_key(
    operation: OperationDefinitionNode, fragments: dict[str, Any], values: dict[str, Any]
) -> tuple[Any, ...]:
    """The values of the variables that the selection below the root field reads."""
    known = _VARIABLES.get(id(operation))
    if known is None or known[0] is not operation:
        used = _selection_variables(operation, fragments)
        _VARIABLES[id(operation)] = (operation, used)
        while len(_VARIABLES) > _MAX_OPERATIONS:
            _VARIABLES.popitem(last=False)
    else:
        used = known[1]
    # Whether each is given at all, too: omitted and null can select differently (defaults).
    return tuple((name in values, repr(values.get(name))) for name in used)


def _shared_on(payload: Any) -> dict[tuple[Any, ...], SharedResult]:
    found: dict[tuple[Any, ...], SharedResult] = vars(payload).setdefault(_RESULTS, {})
    return found


def _find(payload: Any, key: tuple[Any, ...], operation: Any) -> SharedResult | None:
    found = _shared_on(payload).get(key)
    return found if found is not None and found.operation is operation else None


class Selection:
    """One subscription's operation and the values of the variables its selection reads:
    what tells which shared results are its own (computed once per subscription)."""

    __slots__ = ("key", "operation")

    def __init__(
        self,
        operation: OperationDefinitionNode,
        fragments: dict[str, Any],
        values: dict[str, Any],
    ) -> None:
        self.operation = operation
        self.key = (id(operation), variables_key(operation, fragments, values))

    def find(self, payload: Any) -> SharedResult | None:
        """The result of this selection on this shared payload if another subscriber of
        this process computes it or has (see `SharedResult.pending`); None when none does
        (this one computes it). Called for every message a subscriber sends: kept lean."""
        if not isinstance(payload, Shareable):
            return None
        results = vars(payload).get(_RESULTS)
        found = None if results is None else results.get(self.key)
        return found if found is not None and found.operation is self.operation else None


def encode_json(data: object) -> str:
    """orjson, or the standard library for integers beyond 64 bits (which orjson refuses)."""
    try:
        return orjson.dumps(data).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, separators=(",", ":"))


def next_frame_head(operation_id: str) -> str:
    """The start of a graphql-transport-ws `next` message of this operation, up to its data;
    the data's JSON and `}}` complete it."""
    return '{"id":' + encode_json(operation_id) + ',"type":"next","payload":{"data":'


def next_frame(operation_id: str, data: object) -> str:
    """A graphql-transport-ws `next` message. The data of a shared result is encoded once
    for all of its subscribers."""
    shared = _BY_DATA.get(id(data))
    if shared is not None and shared.result is not None and shared.result.data is data:
        encoded = shared.json()
    else:
        encoded = encode_json(data)
    return next_frame_head(operation_id) + encoded + "}}"


class _Done:
    """Stands in for a per-event executor whose result is known already."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> Any:
        return self.result


class SharedEventResults(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, sharing per-event results of shareable payloads."""

    # Set on a per-event executor: the shared result it computes, or waits for first.
    _computes: SharedResult | None = None
    _waits_for: SharedResult | None = None
    hits = 0

    def build_per_event_executor(self, payload: Any) -> Any:
        key: tuple[Any, ...] | None = None
        if isinstance(payload, Shareable):
            key = (id(self.operation), self._variables_key())
            found = _find(payload, key, self.operation)
            if found is not None and not found.pending and found.result is not None:
                # Computed for another subscriber: no executor to build, nothing to execute.
                SharedEventResults.hits += 1
                return _Done(found.result)
        executor = cast(SharedEventResults, super().build_per_event_executor(payload))
        # graphql-core shares this memo of collected fields between the executors of all
        # events of a subscription, keyed by objects built anew for each event: it never
        # hits across events and grew by about 1 KB per event, for the life of the stream.
        executor._relevant_sub_fields = {}
        if key is not None:
            found = _find(payload, key, self.operation)
            if found is None:
                executor._computes = _shared_on(payload)[key] = SharedResult(self.operation)
            elif found.pending:
                executor._waits_for = found
        return executor

    def _variables_key(self) -> tuple[Any, ...]:
        return variables_key(
            self.operation, self.fragment_definitions or {}, self.variable_values.coerced
        )

    def execute_operation(self, serially: bool | None = None) -> Any:
        if self._waits_for is not None:
            return self._after_first(self._waits_for, serially)
        shared = self._computes
        if shared is None:
            return super().execute_operation(serially)
        try:
            result = super().execute_operation(serially)
        except BaseException:
            shared.settle(None)
            raise
        if is_awaitable(result):
            return self._settle_when_done(shared, result)
        shared.settle(cast(ExecutionResult, result))
        return result

    async def _after_first(self, shared: SharedResult, serially: bool | None) -> Any:
        found = await shared.wait()
        if found is not None:
            SharedEventResults.hits += 1
            return found
        result = super().execute_operation(serially)
        return await result if is_awaitable(result) else result

    async def _settle_when_done(self, shared: SharedResult, pending: Any) -> ExecutionResult:
        result: ExecutionResult | None = None
        try:
            result = await pending
            return result
        finally:
            shared.settle(result)
