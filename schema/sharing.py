"""One execution of a subscription's selection per live event, shared by its subscribers.

graphql-core runs a subscription's selection set once per event and subscriber; with a
hundred subscribers on one execution that is most of an API process's time (about 150 us
each). A live event reaches every subscriber of this process as the same object (the
fanout builds it once), so the result of the same operation on it is the same whenever the
variables the selection reads are the same: it is computed once and shared.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, ClassVar

import orjson
from graphql import ExecutionResult, Visitor, visit
from graphql.language import OperationDefinitionNode, VariableNode
from graphql.pyutils import is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Results kept: a few per event and selection in flight; events stop being looked up once
# every subscriber has sent them, within milliseconds.
_MAX_SHARED = 4096


class Shareable:
    """Marks a subscription payload that is one object for all of its subscribers."""

    __slots__ = ()


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
    such as `executionId` or `afterSequence`, do not change how an event is resolved)."""
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
        while len(_VARIABLES) > _MAX_SHARED:
            _VARIABLES.popitem(last=False)
    else:
        used = known[1]
    # Whether each is given at all, too: omitted and null can select differently (defaults).
    return tuple((name in values, repr(values.get(name))) for name in used)


def shared_data(
    payload: Any,
    operation: OperationDefinitionNode,
    fragments: dict[str, Any],
    values: dict[str, Any],
) -> Any:
    """The data of this operation on this live event, if another subscriber of this process
    computed it already (without errors); None otherwise."""
    key = (id(payload), id(operation), variables_key(operation, fragments, values))
    found = SharedEventResults._shared.get(key)
    if found is None or found[0] is not payload:
        return None
    SharedEventResults.hits += 1
    return found[1].data


_ENCODED: OrderedDict[int, tuple[object, str]] = OrderedDict()
# Ids of the data of the results shared now (kept alive by `SharedEventResults._shared`).
_SHARED_DATA: set[int] = set()


def encode_json(data: object) -> str:
    """orjson, or the standard library for integers beyond 64 bits (which orjson refuses)."""
    try:
        return orjson.dumps(data).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, separators=(",", ":"))


def next_frame(operation_id: str, data: object) -> str:
    """A graphql-transport-ws `next` message. The JSON of data shared by subscribers (a live
    event's shared result) is kept while it goes to the others."""
    found = _ENCODED.get(id(data))
    if found is not None and found[0] is data:
        encoded = found[1]
    else:
        encoded = encode_json(data)
        if id(data) in _SHARED_DATA:
            _ENCODED[id(data)] = (data, encoded)
            while len(_ENCODED) > _MAX_SHARED:
                _ENCODED.popitem(last=False)
    return (
        '{"id":' + encode_json(operation_id) + ',"type":"next","payload":{"data":' + encoded + "}}"
    )


class _Done:
    """Stands in for a per-event executor whose result is known already."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result

    def execute_operation(self, serially: bool | None = None) -> Any:
        return self.result


class SharedEventResults(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, sharing per-event results of shareable payloads."""

    _shared: ClassVar[OrderedDict[tuple[int, int, tuple[Any, ...]], tuple[Any, Any]]] = (
        OrderedDict()
    )
    # Set on a per-event executor whose result is to be shared: its cache key.
    _share_as: tuple[Any, ...] | None = None
    hits = 0

    def build_per_event_executor(self, payload: Any) -> Any:
        if not isinstance(payload, Shareable):
            return super().build_per_event_executor(payload)
        key = (id(payload), id(self.operation), self._variables_key())
        found = self._shared.get(key)
        if found is not None and found[0] is payload:
            # Computed for another subscriber: no executor to build, nothing to execute.
            SharedEventResults.hits += 1
            return _Done(found[1])
        executor = super().build_per_event_executor(payload)
        executor._share_as = key  # type: ignore[attr-defined]
        return executor

    def _variables_key(self) -> tuple[Any, ...]:
        return variables_key(
            self.operation, self.fragment_definitions or {}, self.variable_values.coerced
        )

    def execute_operation(self, serially: bool | None = None) -> Any:
        key = self._share_as
        result = super().execute_operation(serially)
        if key is None:
            return result
        if is_awaitable(result):
            return self._remember_when_done(key, self.root_value, result)
        self._remember(key, self.root_value, result)
        return result

    async def _remember_when_done(self, key: Any, payload: Any, pending: Any) -> ExecutionResult:
        result: ExecutionResult = await pending
        self._remember(key, payload, result)
        return result

    def _remember(self, key: Any, payload: Any, result: Any) -> None:
        if result.errors:
            return  # errors are logged per subscriber: not shared
        shared = self._shared
        shared[key] = (payload, result)  # the payload kept alive: its id stays its own
        _SHARED_DATA.add(id(result.data))
        while len(shared) > _MAX_SHARED:
            _, (_, evicted) = shared.popitem(last=False)
            _SHARED_DATA.discard(id(evicted.data))
