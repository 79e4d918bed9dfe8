"""Reading rendered parameters at run time.

The validator checks parameters against the type's schema before a run, but an expression
can still produce anything: these readers check the rendered value and raise a `NodeError`
of type `INVALID_PARAMETER` that names the parameter and shows what it got.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from engine.expressions.functions import type_name
from engine.nodes.base import CHECKPOINT_EVERY, Item, NodeError, NodeRunContext

INVALID_PARAMETER = "INVALID_PARAMETER"

_NUMERIC_TEXT = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*")


def invalid_parameter(name: str, problem: str) -> NodeError:
    return NodeError(
        f"Parameter '{name}' {problem}",
        error_type=INVALID_PARAMETER,
        details={"parameter": name},
    )


def shown(value: Any) -> str:
    """A short rendering of a value for an error message: its JSON, cut to 60 characters. A
    large list or object is described (what it is and how large), never encoded: it may
    hold a large value many times by reference, megabytes of JSON to show 60 characters."""
    kind = type(value)
    if kind is str:
        value = value[:61]  # all that can be shown
    elif (kind is list or kind is tuple or kind is dict) and not _small(value):
        what = "an object of {:,} fields" if kind is dict else "a list of {:,} elements"
        return what.format(len(value))
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = type_name(value)
    return text if len(text) <= 60 else text[:57] + "..."


# A field an item does not have, named by a parameter (Set, Split Out, Aggregate, ...).
FIELD_NOT_FOUND = "FIELD_NOT_FOUND"


def objects(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A required, non-empty list parameter whose entries are objects."""
    entries = parameters.get(name)
    if not isinstance(entries, list) or not entries:
        raise invalid_parameter(name, f"must be a non-empty list, got {shown(entries)}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise invalid_parameter(f"{name}[{index}]", f"must be an object, got {shown(entry)}")
    return entries


def _small(value: Any, budget: int = 256) -> bool:
    """Whether `value` holds at most `budget` values and characters in all (looked at until
    it passes)."""
    pending = [value]
    while pending:
        current = pending.pop()
        kind = type(current)
        budget -= 1
        if kind is str:
            budget -= len(current)
        elif kind is list or kind is tuple or kind is dict:
            budget -= len(current)
            if budget < 0:
                return False
            pending.extend(current.values() if kind is dict else current)
        if budget < 0:
            return False
    return True


def settings(ctx: NodeRunContext, items: Sequence[Item]) -> dict[str, Any]:
    """Node-level parameters, rendered once with the first item (or none) as `$json`."""
    return ctx.parameters(items[0] if items else None, 0)


def per_item(ctx: NodeRunContext) -> Callable[[Item, int], dict[str, Any]]:
    """`ctx.parameters(item, index)` for loops over many items: one scope, reused.

    Building a fresh scope per item costs about as much as rendering a simple expression.
    """
    scope = ctx.scope()
    render = ctx.compiled.render

    def parameters(item: Item, index: int) -> dict[str, Any]:
        scope.json = item
        scope.item_index = index
        rendered = render(scope)
        return rendered if isinstance(rendered, dict) else {}

    return parameters


def chunks(items: Sequence[Item]) -> Iterator[tuple[int, Sequence[Item]]]:
    """`(start, chunk)` pairs of at most `CHECKPOINT_EVERY` items, for checkpointed loops."""
    for start in range(0, len(items), CHECKPOINT_EVERY):
        yield start, items[start : start + CHECKPOINT_EVERY]


# The readers below take `prefix`, the path of the object holding the parameter
# (`rules[1].`), so that errors name the exact field.


def text(
    parameters: Mapping[str, Any], name: str, *, default: str | None = None, prefix: str = ""
) -> str:
    """A non-empty text parameter (or `default` when absent)."""
    value = parameters.get(name, default)
    if value is None:
        raise invalid_parameter(prefix + name, "is required")
    if not isinstance(value, str) or not value.strip():
        raise invalid_parameter(prefix + name, f"must be non-empty text, got {shown(value)}")
    return value


def flag(parameters: Mapping[str, Any], name: str, *, default: bool, prefix: str = "") -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise invalid_parameter(prefix + name, f"must be true or false, got {shown(value)}")
    return value


def choice(
    parameters: Mapping[str, Any],
    name: str,
    options: Sequence[str],
    *,
    default: str,
    prefix: str = "",
) -> str:
    value = parameters.get(name, default)
    if value not in options:
        allowed = ", ".join(options)
        raise invalid_parameter(prefix + name, f"must be one of {allowed}; got {shown(value)}")
    return str(value)


def as_number(value: Any) -> int | float | None:
    """A number, or numeric text read as one; None for anything else (booleans included)."""
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value):
        stripped = value.strip()
        try:
            return int(stripped)
        except ValueError:
            return float(stripped)
    return None


def number(parameters: Mapping[str, Any], name: str, *, minimum: float) -> float:
    """A finite number of at least `minimum`; numeric text is accepted."""
    value = as_number(parameters.get(name))
    if value is None or not math.isfinite(value) or value < minimum:
        raise invalid_parameter(
            name, f"must be a number of at least {minimum:g}, got {shown(parameters.get(name))}"
        )
    return float(value)


def whole_number(parameters: Mapping[str, Any], name: str, *, minimum: int) -> int:
    """A whole number of at least `minimum`; numeric text and 3.0 are accepted."""
    value = as_number(parameters.get(name))
    whole = isinstance(value, int) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )
    if value is None or not whole or value < minimum:
        raise invalid_parameter(
            name,
            f"must be a whole number of at least {minimum}, got {shown(parameters.get(name))}",
        )
    return int(value)
