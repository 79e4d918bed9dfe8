"""One execution of a subscription's selection per live event, shared by its subscribers.

graphql-core runs a subscription's selection set once per event and subscriber; with a
hundred subscribers on one execution that is most of an API process's time (about 150 us
each). A live event reaches every subscriber of this process as the same object (the
fanout builds it once), so the result of the same operation on it is the same whenever the
variables the selection reads are the same: it is computed once and shared.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

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


class SharedEventResults(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, sharing per-event results of shareable payloads."""

    _shared: ClassVar[OrderedDict[tuple[int, int, tuple[Any, ...]], tuple[Any, Any]]] = (
        OrderedDict()
    )
    # Per parsed operation (the parser cache keeps them): the variables its selection reads.
    _variables: ClassVar[OrderedDict[int, tuple[Any, list[str]]]] = OrderedDict()
    _per_event = False
    hits = 0

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._per_event = True  # type: ignore[attr-defined]
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        payload = self.root_value
        if not self._per_event or not isinstance(payload, Shareable):
            return super().execute_operation(serially)
        known = self._variables.get(id(self.operation))
        if known is None or known[0] is not self.operation:
            used = _selection_variables(self.operation, self.fragment_definitions or {})
            self._variables[id(self.operation)] = (self.operation, used)
            while len(self._variables) > _MAX_SHARED:
                self._variables.popitem(last=False)
        else:
            used = known[1]
        values = self.variable_values.coerced
        key = (id(payload), id(self.operation), tuple(repr(values.get(name)) for name in used))
        found = self._shared.get(key)
        if found is not None and found[0] is payload:
            SharedEventResults.hits += 1
            return found[1]
        result = super().execute_operation(serially)
        if is_awaitable(result):
            return self._remember_when_done(key, payload, result)
        self._remember(key, payload, result)
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
        while len(shared) > _MAX_SHARED:
            shared.popitem(last=False)
