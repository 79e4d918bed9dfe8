"""Expression previews: the value a parameter's text would have for one item of a node.

The editor asks on every keystroke, against the data of an earlier run (the resolver finds
it, `resolvers/previews.py`). Evaluation is the run's own: the text is compiled by
`compile_parameters` (compiled to locate errors, `locate=True`) and rendered under the
deployment's `ExpressionLimits`, with a scope built as the executor builds it
(`NodeRunContext.scope`). Nothing here does I/O; failures are values, not exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.expressions import (
    Budget,
    ExpressionError,
    ExpressionLimitError,
    ExpressionLimits,
    ExpressionSyntaxError,
    Scope,
    compile_parameters,
)
from engine.expressions.budget import SETTING
from engine.expressions.errors import DeadlineReached

# The error codes, the same as a node run's error types at run time (and as validation's
# problem code for a syntax error).
EXPRESSION_SYNTAX = "EXPRESSION_SYNTAX"
EXPRESSION_ERROR = "EXPRESSION_ERROR"
EXPRESSION_LIMIT = "EXPRESSION_LIMIT"

# A preview holds the event loop no longer than the steps budget allows; this bounds it in
# time too, like a node's timeout at run time (a budget raised by a deployment cannot make
# one keystroke hold the process for seconds).
PREVIEW_DEADLINE_S = 1.0


@dataclass(frozen=True, slots=True)
class PreviewData:
    """What a preview may read: the node's main input, earlier nodes' main-output items by
    node name, and the facts `$execution` and `$workflow` show."""

    input_items: Sequence[Any]
    node_outputs: Mapping[str, Sequence[Any]]
    execution: Mapping[str, Any]
    workflow: Mapping[str, Any]
    now: str

    def scope(self, item_index: int, budget: Budget) -> Scope:
        """The scope of item `item_index`, as the executor builds it for a node."""
        return Scope(
            json=self.input_items[item_index],
            input=self.input_items,
            item_index=item_index,
            node_outputs=self.node_outputs,
            execution=self.execution,
            workflow=self.workflow,
            now=self.now,
            budget=budget,
        )


@dataclass(frozen=True, slots=True)
class Rendered:
    """The value the text (or the parameters) would have."""

    value: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """Why it would fail: `code` as at run time, `position` [start, end) in the text of
    `parameter` (the text itself for an expression preview), `limit` for EXPRESSION_LIMIT."""

    code: str
    message: str
    position: tuple[int, int] | None = None
    parameter: str | None = None
    limit: str | None = None
    setting: str | None = None


def preview_expression(
    text: str, data: PreviewData, item_index: int, limits: ExpressionLimits
) -> Rendered | Failed:
    """The value `text` (a parameter value: `{{ }}` expressions in text, or plain text)
    would have for item `item_index` of the node's input."""
    return _render(text, data, item_index, limits, whole_text=text)


def preview_parameters(
    parameters: Any, data: PreviewData, item_index: int, limits: ExpressionLimits
) -> Rendered | Failed:
    """A node's parameters as they would be rendered for item `item_index`: one budget for
    all their expressions, the first failure reported, as at run time."""
    return _render(parameters, data, item_index, limits, whole_text=None)


def _render(
    parameters: Any,
    data: PreviewData,
    item_index: int,
    limits: ExpressionLimits,
    whole_text: str | None,
) -> Rendered | Failed:
    compiled, problems = compile_parameters(parameters, locate=True)
    if problems:
        return _failed(problems[0].error, whole_text)
    if compiled.is_constant:
        return Rendered(compiled.source)
    budget = Budget(limits, time.monotonic() + PREVIEW_DEADLINE_S)
    try:
        return Rendered(compiled.render(data.scope(item_index, budget)))
    except ExpressionError as exc:
        return _failed(exc, whole_text)
    except DeadlineReached:
        return Failed(
            EXPRESSION_LIMIT,
            f"the preview took longer than {PREVIEW_DEADLINE_S:g} s",
            None if whole_text is None else (0, len(whole_text)),
            limit="time",
        )


def _failed(error: ExpressionError, whole_text: str | None) -> Failed:
    position = error.position
    parameter = error.parameter or None
    if position is None and whole_text is not None:
        position = (0, len(whole_text))  # a failure of the whole text (its length)
    if isinstance(error, ExpressionSyntaxError):
        return Failed(EXPRESSION_SYNTAX, str(error), position, parameter)
    if isinstance(error, ExpressionLimitError):
        return Failed(
            EXPRESSION_LIMIT,
            str(error),
            position,
            parameter,
            limit=error.limit,
            setting=SETTING.get(error.limit),
        )
    return Failed(EXPRESSION_ERROR, str(error), position, parameter)
