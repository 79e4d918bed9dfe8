"""What an expression can see: the current item, the node's input, earlier nodes' outputs,
and facts about the execution. Plain data, plus `NodeItems` views with a few methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.expressions.budget import Budget
from engine.expressions.errors import EvalError
from engine.expressions.functions import type_name


class NodeItems:
    """The items a node produced (or this node received), as `$("Name")` / `$input` show them.

    `.all()` every item, `.first()`, `.last()`, `.item` the item at the current index,
    `.json` the first item, `.length` how many; indexing `[i]` picks one.
    """

    __slots__ = ("_index", "_items", "_label")

    def __init__(self, items: Sequence[Any], index: int, label: str) -> None:
        self._items = items
        self._index = index
        self._label = label

    def get(self, key: Any) -> Any:
        if isinstance(key, bool) or not isinstance(key, int):
            return self.attribute(key) if isinstance(key, str) else self._no(key)
        if -len(self._items) <= key < len(self._items):
            return self._items[key]
        return None

    def attribute(self, name: str) -> Any:
        if name == "item":
            return self._items[self._index] if self._index < len(self._items) else None
        if name == "json":
            return self._items[0] if self._items else None
        if name in ("length", "count"):
            return len(self._items)
        if name == "items":
            return self.items()
        raise EvalError(f"{self._label} has no field {name!r} (use .all(), .first(), .item)")

    def call(self, name: str, args: list[Any]) -> Any:
        if args:
            raise EvalError(f"{self._label}.{name}() takes no arguments")
        if name == "all":
            return self.items()
        if name == "first":
            return self._items[0] if self._items else None
        if name == "last":
            return self._items[-1] if self._items else None
        raise EvalError(f"{self._label} has no method {name!r} (use .all(), .first(), .last())")

    def items(self) -> list[Any]:
        """The items as a list: the node's own list, not a copy (nothing an expression can
        do changes a list, and behaviours never change the items they are given), so that
        `$input.all()` costs nothing however many items there are."""
        return self._items if isinstance(self._items, list) else list(self._items)

    def _no(self, key: Any) -> Any:
        raise EvalError(f"{self._label} cannot be indexed by a {type_name(key)}")


class NodeOutputs:
    """`$node` and `$("Name")`: the main-output items of earlier nodes, by node name."""

    __slots__ = ("_index", "_outputs")

    def __init__(self, outputs: Mapping[str, Sequence[Any]], index: int) -> None:
        self._outputs = outputs
        self._index = index

    def lookup(self, name: Any) -> NodeItems:
        if not isinstance(name, str):
            raise EvalError(f"node names are strings, got {type_name(name)}")
        items = self._outputs.get(name)
        if items is None:
            raise EvalError(f"no output of node {name!r} (is it an earlier node?)")
        return NodeItems(items, self._index, f"$({name!r})")


def plain(value: Any) -> Any:
    """A value as JSON data: `$input` and `$("Name")` used as a value (in a parameter, a
    list, a function's argument) are their items; `$node` alone is no value."""
    if isinstance(value, NodeItems):
        return value.attribute("items")
    if isinstance(value, NodeOutputs):
        raise EvalError("$node is not a value: pick a node, as in $node['Name'] or $('Name')")
    return value


@dataclass(slots=True)
class Scope:
    """Everything one evaluation can read. Built once per item by the executor."""

    json: Any = field(default_factory=dict)
    input: Sequence[Any] = ()
    item_index: int = 0
    node_outputs: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    execution: Mapping[str, Any] = field(default_factory=dict)
    workflow: Mapping[str, Any] = field(default_factory=dict)
    now: str = ""
    # `$parameter`: a declarative node type's node parameters, rendered for the item, as its
    # request template sees them (engine/declarative.py); empty everywhere else.
    parameter: Mapping[str, Any] = field(default_factory=dict)
    # The meter of the rendering in progress; `CompiledParameters.render` starts it afresh.
    budget: Budget = field(default_factory=Budget)

    @property
    def input_items(self) -> NodeItems:
        return NodeItems(self.input, self.item_index, "$input")

    @property
    def nodes(self) -> NodeOutputs:
        return NodeOutputs(self.node_outputs, self.item_index)
