"""The conditions of `if`, `filter` and `switch`: comparisons combined with all or any.

Each condition compares `left` (usually an expression such as `{{ $json.age }}`) with `right`
using an operator. Values are JSON, so the rules say what happens across types:

- equals, not_equals: a number and numeric text compare as numbers (10 equals "10"); two
  texts compare as text ("007" is not "7"); a boolean equals the text "true" or "false";
  anything else by JSON equality (true never equals 1).
- gt, gte, lt, lte: numbers, or numeric text on both sides, as numbers; texts as text (so
  ISO dates order correctly); any other pair does not match.
- contains, not_contains: text within text, an element within a list (compared as by
  equals), a key within an object. starts_with, ends_with: text; numbers read as text.
- regex: searched for in the value's text. The pattern is checked before it is compiled
  (`engine.expressions.patterns`); the searches of one item's regex conditions share the
  regex time of the expression limits (`LOOM_REGEX_TIMEOUT_S`), so that a catastrophically
  backtracking pattern, or many slow ones, fail with `REGEX_TIMEOUT` instead of stalling.
- exists, not_exists: whether the value is there and not null. is_empty, is_not_empty:
  null, "", [] and {} are empty; numbers and booleans never are.

`ignoreCase` applies to every comparison of text, the regex included.

Testing is metered as expressions are: each item's tests charge a budget of their own
(`Budget`, the expression limits) before the work is done, so a condition on large data
fails with EXPRESSION_LIMIT, and a raised limit still stops at the node's deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from engine.expressions.budget import REGEX_TIME, Budget
from engine.expressions.errors import LimitExceeded
from engine.expressions.functions import search, to_text
from engine.expressions.lexer import has_expression
from engine.expressions.patterns import InvalidPattern, Pattern, compile_pattern
from engine.nodes import schema
from engine.nodes.base import NodeError
from engine.nodes.parameters import INVALID_PARAMETER, as_number, invalid_parameter, shown

REGEX_TIMEOUT = "REGEX_TIMEOUT"
EXPRESSION_LIMIT = "EXPRESSION_LIMIT"
# Steps per condition tested, and per element of a list or object that `contains` looks
# through in Python code.
CONDITION_STEPS = 4


class _RightValueError(Exception):
    """The `right` value cannot be used (a bad, too costly or too slow regex); names no
    field yet. `limit` names the expression limit it passed, if one."""

    def __init__(self, problem: str, error_type: str, limit: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.error_type = error_type
        self.limit = limit

    def node_error(self, field: str) -> NodeError:
        """The error naming the field (`conditions[0].right`)."""
        if self.limit is not None:
            return NodeError(
                f"Condition '{field}': {self.problem}",
                error_type=self.error_type,
                details={"parameter": field, "limit": self.limit},
            )
        return NodeError(
            f"Parameter '{field}' {self.problem}",
            error_type=self.error_type,
            details={"parameter": field},
        )


def _text(value: Any) -> str | None:
    """Text, or a number or boolean as text; None for null, lists and objects."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return to_text(value)
    return None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _equals(left: Any, right: Any, ignore_case: bool) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold() if ignore_case else left == right
    if type(left) in (int, float) or type(right) in (int, float):
        left_number, right_number = as_number(left), as_number(right)
        return left_number is not None and left_number == right_number
    if isinstance(left, bool) or isinstance(right, bool):
        left_boolean = _boolean(left)
        return left_boolean is not None and left_boolean == _boolean(right)
    return bool(left == right)


def _order(left: Any, right: Any, ignore_case: bool) -> int | None:
    """-1, 0 or 1 comparing left with right; None when they cannot be ordered."""
    left_number, right_number = as_number(left), as_number(right)
    if left_number is not None and right_number is not None:
        if left_number != left_number or right_number != right_number:  # NaN
            return None
        return (left_number > right_number) - (left_number < right_number)
    if isinstance(left, str) and isinstance(right, str):
        if ignore_case:
            left, right = left.casefold(), right.casefold()
        return int(left > right) - int(left < right)
    return None


def _ordered(accept: Callable[[int], bool]) -> Callable[[Any, Any, bool], bool]:
    def test(left: Any, right: Any, ignore_case: bool) -> bool:
        order = _order(left, right, ignore_case)
        return order is not None and accept(order)

    return test


def _contains(left: Any, right: Any, ignore_case: bool) -> bool:
    if isinstance(left, list):
        if ignore_case and isinstance(right, str):
            wanted = right.casefold()  # once, not once per element
            return any(
                element.casefold() == wanted
                if isinstance(element, str)
                else _equals(element, right, False)
                for element in left
            )
        return any(_equals(element, right, ignore_case) for element in left)
    if isinstance(left, dict):
        if not isinstance(right, str):
            return False
        if ignore_case:
            wanted = right.casefold()
            return any(key.casefold() == wanted for key in left)
        return right in left
    return _text_test(left, right, ignore_case, lambda haystack, needle: needle in haystack)


def _text_test(left: Any, right: Any, ignore_case: bool, test: Callable[[str, str], bool]) -> bool:
    left_text, right_text = _text(left), _text(right)
    if left_text is None or right_text is None:
        return False
    if ignore_case:
        return test(left_text.casefold(), right_text.casefold())
    return test(left_text, right_text)


def _pattern(right: Any, ignore_case: bool) -> Pattern:
    if not isinstance(right, str):
        raise _RightValueError(
            f"must be a regular expression (text), got {shown(right)}", INVALID_PARAMETER
        )
    try:
        return compile_pattern(right, ignore_case)
    except InvalidPattern as exc:
        raise _RightValueError(
            f"is not a valid regular expression: {exc.reason}", INVALID_PARAMETER
        ) from None
    except LimitExceeded as exc:
        raise _RightValueError(str(exc), EXPRESSION_LIMIT, exc.limit) from None


def pattern_problems(parameters: dict[str, Any]) -> Iterator[tuple[str, str, str] | None]:
    """Literal patterns of `regex` conditions that cannot be used, for the node's issues on
    save: (code, parameter path, message), and None after each pattern compiled (a place to
    pause: a node may hold hundreds). Patterns that are expressions are checked when they
    are rendered."""
    ignore_case = parameters.get("ignoreCase") is True
    lists: list[tuple[str, Any]] = [("conditions", parameters.get("conditions"))]
    rules = parameters.get("rules")
    if isinstance(rules, list):
        lists += [
            (f"rules[{index}].conditions", rule.get("conditions"))
            for index, rule in enumerate(rules)
            if isinstance(rule, dict)
        ]
    for where, conditions in lists:
        for index, condition in enumerate(conditions if isinstance(conditions, list) else ()):
            if not isinstance(condition, dict) or condition.get("operator") != "regex":
                continue
            right = condition.get("right")
            if not isinstance(right, str) or has_expression(right):
                continue
            try:
                _pattern(right, ignore_case)
            except _RightValueError as exc:
                error = exc.node_error(f"{where}[{index}].right")
                yield ("INVALID_REGEX", error.details["parameter"], error.message)
            yield None


def _regex(budget: Budget, left: Any, right: Any, ignore_case: bool) -> bool:
    pattern = _pattern(right, ignore_case)
    subject = _text(left)
    if subject is None:
        return False
    return search(budget, pattern, subject)


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


Test = Callable[[Any, Any, bool], bool]

_TESTS: dict[str, Test | None] = {
    "equals": _equals,
    "not_equals": lambda left, right, ignore_case: not _equals(left, right, ignore_case),
    "gt": _ordered(lambda order: order > 0),
    "gte": _ordered(lambda order: order >= 0),
    "lt": _ordered(lambda order: order < 0),
    "lte": _ordered(lambda order: order <= 0),
    "contains": _contains,
    "not_contains": lambda left, right, ignore_case: not _contains(left, right, ignore_case),
    "starts_with": lambda left, right, ignore_case: _text_test(
        left, right, ignore_case, str.startswith
    ),
    "ends_with": lambda left, right, ignore_case: _text_test(
        left, right, ignore_case, str.endswith
    ),
    "is_empty": lambda left, right, ignore_case: _is_empty(left),
    "is_not_empty": lambda left, right, ignore_case: not _is_empty(left),
    "regex": None,  # `_regex`, which charges the item's budget as `matches()` does
    "exists": lambda left, right, ignore_case: left is not None,
    "not_exists": lambda left, right, ignore_case: left is None,
}

OPERATORS = tuple(_TESTS)
UNARY_OPERATORS = ("is_empty", "is_not_empty", "exists", "not_exists")


def matches(
    conditions: Any, *, combine: str, ignore_case: bool, where: str, budget: Budget | None = None
) -> bool:
    """Whether rendered `conditions` hold: every one (`combine="all"`) or at least one.

    `where` is the parameter path of the list (`conditions`, `rules[1].conditions`), used to
    name the failing field in errors. `budget` (the item's) is charged for what testing
    costs, before each test: a condition on large data fails with EXPRESSION_LIMIT instead
    of holding the event loop.
    """
    if not isinstance(conditions, list):
        raise invalid_parameter(where, f"must be a list of conditions, got {shown(conditions)}")
    budget = budget or Budget()
    want_all = combine == "all"
    for index, condition in enumerate(conditions):
        if _holds(condition, ignore_case, where, index, budget) is not want_all:
            return not want_all
    return want_all


def _charge(budget: Budget, operator: str, left: Any, right: Any, ignore_case: bool) -> None:
    """What testing a condition costs, charged before it is done: texts by their characters
    (scanned, compared, read as numbers, and folded again when ignoring case), lists and
    objects by the elements `contains` looks through, containers compared by their size."""
    budget.charge(CONDITION_STEPS)
    if operator in UNARY_OPERATORS:
        return
    folds = 2 if ignore_case else 1
    if operator in ("contains", "not_contains") and isinstance(left, list | dict):
        budget.charge(CONDITION_STEPS * len(left))
        if isinstance(left, list):  # each element compared with `right`
            budget.charge_chars(folds * sum(len(e) for e in left if type(e) is str))
        elif ignore_case:  # each key folded; otherwise one lookup
            budget.charge_chars(2 * sum(map(len, left)))
        if isinstance(right, list | dict):
            budget.charge_elements(budget.work(left))
        elif type(right) is str:
            budget.charge_chars(folds * len(right))
        return
    chars = (len(left) if type(left) is str else 0) + (len(right) if type(right) is str else 0)
    budget.charge_chars(folds * chars)
    budget.comparison(left, right)


def _holds(condition: Any, ignore_case: bool, where: str, index: int, budget: Budget) -> bool:
    # Runs per item and condition: field paths are only built for an error.
    if type(condition) is not dict:
        raise invalid_parameter(
            f"{where}[{index}]", f"must be a condition object, got {shown(condition)}"
        )
    operator = condition.get("operator", "equals")
    if type(operator) is not str or operator not in _TESTS:
        raise invalid_parameter(
            f"{where}[{index}].operator",
            f"must be one of {', '.join(OPERATORS)}; got {shown(operator)}",
        )
    left, right = condition.get("left"), condition.get("right")
    test = _TESTS[operator]
    try:
        if test is None:
            budget.charge(CONDITION_STEPS)
            return _regex(budget, left, right, ignore_case)
        _charge(budget, operator, left, right, ignore_case)
        return test(left, right, ignore_case)
    except _RightValueError as exc:
        raise exc.node_error(f"{where}[{index}].right") from None
    except LimitExceeded as exc:
        raise _limit_error(exc, f"{where}[{index}]") from None


def _limit_error(exc: LimitExceeded, field: str) -> NodeError:
    if exc.limit == REGEX_TIME:  # the pattern's fault, named as such
        field += ".right"
        return NodeError(
            f"Condition '{field}': {exc}",
            error_type=REGEX_TIMEOUT,
            details={"parameter": field, "limit": exc.limit},
        )
    return NodeError(
        f"Condition '{field}' needs too much work: {exc}",
        error_type=EXPRESSION_LIMIT,
        details={"parameter": field, "limit": exc.limit},
    )


def conditions_parameter() -> schema.JSONSchema:
    # Every operator but the emptiness and existence tests needs something to compare with.
    needs_right: schema.JSONSchema = {
        "if": {
            "properties": {"operator": {"not": {"enum": list(UNARY_OPERATORS)}}},
            "required": ["operator"],
        },
        "then": {"required": ["right"]},
    }
    condition = schema.object_of(
        {
            "left": schema.any_value(
                "Value", "The value to test, usually an expression such as {{ $json.status }}."
            ),
            "operator": schema.choice(
                "Comparison",
                "How to compare the value: equals, not_equals, gt (greater than), gte (greater "
                "than or equal), lt (less than), lte (less than or equal), contains (text in "
                "text, an element in a list, a key in an object), not_contains, starts_with, "
                "ends_with, is_empty (null, empty text, list or object), is_not_empty, regex "
                "(matches a regular expression), exists (present and not null) or not_exists. "
                "A number and numeric text compare as numbers; text orders alphabetically.",
                OPERATORS,
                default="equals",
            ),
            "right": schema.any_value(
                "Compare with",
                "The value to compare against, or the regular expression for 'regex'. Not used "
                "by is_empty, is_not_empty, exists and not_exists.",
            ),
        },
        required=("left", "operator"),
        **needs_right,
    )
    return schema.list_of(
        "Conditions", "The tests each item is checked against.", condition, min_items=1
    )


def combine_parameter() -> schema.JSONSchema:
    return schema.choice(
        "Combine conditions",
        "all: an item matches when every condition holds; any: when at least one holds.",
        ("all", "any"),
        default="all",
    )


def ignore_case_parameter() -> schema.JSONSchema:
    return schema.flag(
        "Ignore case", "Compare text without regard to upper and lower case.", default=False
    )
