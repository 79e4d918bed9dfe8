"""Parameter values with `{{ ... }}`: compiled once, rendered per item."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.expressions.budget import TEMPLATE_STEPS
from engine.expressions.compiler import Compiled, compile_counted
from engine.expressions.errors import (
    EvalError,
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionLimitError,
    LimitExceeded,
)
from engine.expressions.functions import text_of
from engine.expressions.lexer import Segment, has_expression, split_template
from engine.expressions.scope import Scope

Renderer = Callable[[Scope], Any]
# What an error names as its expression when all of a node's expressions together fail.
ALL_EXPRESSIONS = "every expression of the node's parameters"


@dataclass(frozen=True, slots=True)
class Template:
    """A string parameter holding expressions. A lone expression keeps its value's type."""

    source: str
    render: Renderer
    # What one rendering's evaluation of its expressions' own operations costs.
    steps: int = 0


def compile_template(source: str, locate: bool = False) -> Template:
    """Compile a string that may hold `{{ }}` expressions.

    Errors say where in `source` they are (`ExpressionError.position`): syntax errors
    always, evaluation errors when `locate` (previews; see `compile_counted`).
    """
    segments = split_template(source)
    expressions = [segment for segment in segments if segment.is_expression]
    if not expressions:
        return Template(source, lambda scope: source)
    only = len(segments) == 1 or (
        len(expressions) == 1
        and all(segment.is_expression or not segment.text.strip() for segment in segments)
    )
    if only:
        compiled, steps = _compile_segment(expressions[0], locate)
        return Template(source, compiled, steps)
    parts: list[str | Compiled] = []
    steps = TEMPLATE_STEPS
    for segment in segments:
        if segment.is_expression:
            compiled, expression_steps = _compile_segment(segment, locate)
            parts.append(compiled)
            steps += expression_steps
        else:
            parts.append(segment.text)

    def render(scope: Scope) -> str:
        # The text is one value: its size is checked piece by piece, so that a template of
        # many large pieces fails at the first piece past the limit, not once all are built.
        budget = scope.budget
        limit = budget.limits.max_value_size
        pieces: list[str] = []
        total = 0
        try:
            for part in parts:
                if isinstance(part, str):
                    piece = part
                else:
                    piece = text_of(budget, part(scope), limit - total)
                total += len(piece)
                budget.check_size(total, "the text of this parameter")
                pieces.append(piece)
            budget.charge_chars(total)
        except LimitExceeded as exc:
            raise ExpressionLimitError(str(exc), source, exc.limit) from exc
        except EvalError as exc:
            raise ExpressionEvaluationError(str(exc), source) from exc
        return "".join(pieces)

    return Template(source, render, steps)


def _compile_segment(segment: Segment, locate: bool) -> tuple[Compiled, int]:
    """One expression of a template, its errors' positions made positions in the template."""
    try:
        compiled, steps = compile_counted(segment.text, locate)
    except ExpressionError as exc:
        _shift(exc, segment.start)
        raise
    if not locate or not segment.start:
        return compiled, steps
    start = segment.start

    def shifting(scope: Scope) -> Any:
        try:
            return compiled(scope)
        except ExpressionError as exc:
            _shift(exc, start)
            raise

    return shifting, steps


def _shift(error: ExpressionError, by: int) -> None:
    if error.position is not None:
        error.position = (error.position[0] + by, error.position[1] + by)


@dataclass(frozen=True, slots=True)
class ParameterError:
    """Where a parameter's expression failed to compile."""

    path: str
    error: ExpressionError


class CompiledParameters:
    """A node's parameters with every expression compiled; `render` gives plain JSON."""

    __slots__ = ("_render", "derived", "is_constant", "source", "steps")

    def __init__(
        self, source: Any, render: Callable[[Scope], Any], is_constant: bool, steps: int = 0
    ) -> None:
        self.source = source
        self._render = render
        self.is_constant = is_constant
        # The expressions' own operations, charged as each rendering starts.
        self.steps = steps
        # What a behaviour works out from the parameters' source once, not on every run
        # (compiled parameters live as long as the plan, which is cached): by the
        # behaviour's own key. Only what depends on the source alone belongs here.
        self.derived: dict[str, Any] = {}

    def render(self, scope: Scope) -> Any:
        """The parameters for one item: one budget for all their expressions."""
        try:
            scope.budget.start(self.steps)
        except LimitExceeded as exc:  # the expressions' operations alone are too many
            raise ExpressionLimitError(str(exc), ALL_EXPRESSIONS, exc.limit) from exc
        return self._render(scope)


def compile_parameters(
    parameters: Any, locate: bool = False
) -> tuple[CompiledParameters, list[ParameterError]]:
    """Compile every string with `{{ }}` in a JSON value; returns problems by field path.
    `locate`: evaluation errors say where in their parameter's text they are (previews)."""
    errors: list[ParameterError] = []
    steps = 0

    def build(value: Any, path: str) -> tuple[Callable[[Scope], Any], bool]:
        nonlocal steps
        if isinstance(value, str):
            if not has_expression(value):
                return (lambda scope: value), True
            try:
                template = compile_template(value, locate)
            except ExpressionError as exc:
                exc.parameter = path
                errors.append(ParameterError(path, exc))
                return (lambda scope: value), True
            steps += template.steps
            return _naming_parameter(template.render, path), False
        if isinstance(value, list):
            built = [build(item, _item_path(path, index)) for index, item in enumerate(value)]
            if all(constant for _, constant in built):
                return (lambda scope: value), True
            renders = [render for render, _ in built]
            steps += len(renders)  # each entry is rendered anew for every item
            return (lambda scope: [render(scope) for render in renders]), False
        if isinstance(value, dict):
            entries = [(key, build(item, _key_path(path, key))) for key, item in value.items()]
            if all(constant for _, (_, constant) in entries):
                return (lambda scope: value), True
            pairs = [(key, render) for key, (render, _) in entries]
            steps += len(pairs)
            return (lambda scope: {key: render(scope) for key, render in pairs}), False
        return (lambda scope: value), True

    render, constant = build(parameters, "")
    return CompiledParameters(parameters, render, constant, steps), errors


def expression_texts(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every string holding `{{ }}` in a parameter value, with the paths
    `compile_parameters` gives its problems."""
    if isinstance(value, str):
        if has_expression(value):
            yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from expression_texts(item, _item_path(path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from expression_texts(item, _key_path(path, key))


def _item_path(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _naming_parameter(render: Renderer, path: str) -> Renderer:
    def render_naming(scope: Scope) -> Any:
        try:
            return render(scope)
        except ExpressionError as exc:
            exc.parameter = path
            raise

    return render_naming


_REFERENCE = re.compile(
    r"""(?P<head>\$node\s*\[\s*|\$\(\s*)(?P<quote>["'])(?P<name>(?:\\.|(?!(?P=quote)).)*)(?P=quote)"""
)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _quote(name: str, quote: str) -> str:
    return quote + name.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def referenced_nodes(value: Any) -> set[str]:
    """Names of nodes referenced as `$node["X"]` or `$("X")` anywhere in a parameter value."""
    found: set[str] = set()
    for text in _strings(value):
        if not has_expression(text):
            continue
        for segment in _expression_segments(text):
            found.update(_unescape(match["name"]) for match in _REFERENCE.finditer(segment))
    return found


def rename_references(value: Any, old: str, new: str) -> Any:
    """A copy of a parameter value with references to node `old` pointing at `new`."""
    if isinstance(value, str):
        if not has_expression(value):
            return value

        def rewrite(match: re.Match[str]) -> str:
            if _unescape(match["name"]) != old:
                return match.group()
            return match["head"] + _quote(new, match["quote"])

        return _REFERENCE.sub(rewrite, value)
    if isinstance(value, list):
        return [rename_references(item, old, new) for item in value]
    if isinstance(value, dict):
        return {key: rename_references(item, old, new) for key, item in value.items()}
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []


def _expression_segments(text: str) -> list[str]:
    try:
        return [segment.text for segment in split_template(text) if segment.is_expression]
    except ExpressionError:
        return []
