"""Metered expressions: a hostile corpus, and what the budget means.

Every case renders a node's parameters once (one budget, the default limits) and must fail
with a typed error (`ExpressionLimitError` naming its limit, or another
`ExpressionError`) quickly and without growing memory: each runs under tracemalloc.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from engine.expressions import (
    Budget,
    CompiledParameters,
    ExpressionError,
    ExpressionLimitError,
    ExpressionLimits,
    Scope,
    compile_parameters,
)
from engine.expressions.budget import (
    DEFAULT_LIMITS,
    NUMBER_SIZE,
    REGEX_TIME,
    STEPS,
    VALUE_SIZE,
)
from engine.expressions.errors import DeadlineReached

# Data an expression can read: large, as a node's input may be.
BIG = list(range(1_200_000))
DEEP: list[Any] = []
for _ in range(10_000):
    DEEP = [DEEP]
TEXT = "t" * 100_000
ITEM = {"big": BIG, "text": TEXT, "deep": DEEP}
INPUT = [{"n": index} for index in range(300_000)]

CATASTROPHIC = "matches('a' * 5000 + '!', '(a+)+$')"
ERROR = "error"  # a typed ExpressionError that is not a limit

# (case, parameters or a template, what it must fail with)
HOSTILE: list[tuple[str, Any, str]] = [
    (
        "issue: nested repetition compared",
        "{{ ([[0]*100000]*100000 == [[0]*100000]*100000) }}",
        VALUE_SIZE,
    ),
    (
        "issue: the same, twice",
        "{{ ([[0]*100000]*100000 == [[0]*100000]*100000) and "
        "([[0]*100000]*100000 == [[0]*100000]*100000) }}",
        VALUE_SIZE,
    ),
    ("issue: round to minus ten million digits", "{{ round(5, -10000000) }}", NUMBER_SIZE),
    ("issue: 200 strings of a million", "{{ ['x'*1000000]*200 }}", VALUE_SIZE),
    ("issue: 1,000 pieces of a million", "{{ 'x'*1000000 }}" * 1000, VALUE_SIZE),
    ("round to ten million digits", "{{ round(1.5, 10000000) }}", NUMBER_SIZE),
    ("string past the limit", "{{ 'x' * 1000001 }}", VALUE_SIZE),
    ("list past the limit", "{{ [0] * 1000001 }}", VALUE_SIZE),
    ("string times 10**12", "{{ 'ab' * 10**12 }}", VALUE_SIZE),
    ("list times 10**300", "{{ [1, 2, 3] * 10**300 }}", VALUE_SIZE),
    ("three levels of repetition", "{{ [[[0]*100]*100]*100 }}", VALUE_SIZE),
    ("six levels of repetition", "{{ [[[[[[0]*10]*10]*10]*10]*10]*10 }}", VALUE_SIZE),
    ("lists concatenated", "{{ [[0]*500]*1500 + [[0]*500]*1500 }}", VALUE_SIZE),
    ("strings concatenated", "{{ 'x'*600000 + 'y'*600000 }}", VALUE_SIZE),
    ("text and more text", "{{ 'a' + 'b'*999999 + 'c' }}", VALUE_SIZE),
    ("text joined to a list", "{{ 'total: ' + [[0]*1000]*1000 }}", VALUE_SIZE),
    ("join with a long glue", "{{ join(['x'*1000]*999, 'y'*1000) }}", VALUE_SIZE),
    ("text of a large list", "{{ str([[0]*1000]*900) }}", STEPS),
    ("json of a large list", "{{ json([[0]*100000]*9) }}", STEPS),
    ("two to the 5,000", "{{ 2 ** 5000 }}", NUMBER_SIZE),
    ("large numbers multiplied", "{{ 10 ** 999 * 10 ** 999 }}", NUMBER_SIZE),
    ("tower of powers", "{{ 9 ** 9 ** 9 }}", NUMBER_SIZE),
    ("text of a huge number", "{{ len(str(10**4000)) }}", NUMBER_SIZE),
    ("replace that grows", "{{ replace('a'*900000, 'a', 'aaaa') }}", VALUE_SIZE),
    ("split into many parts", "{{ split('a,' * 500000, ',') }}", VALUE_SIZE),
    ("split into characters", "{{ split('x' * 999999, '') }}", VALUE_SIZE),
    ("sorted large nested list", "{{ sorted([[0]*1000]*999) }}", STEPS),
    ("unique of a large nested list", "{{ unique([[0]*1000]*999) }}", STEPS),
    ("comparison of nested lists", "{{ [[0]*100000]*9 == [[0]*100000]*9 }}", STEPS),
    ("comparison of long lists", "{{ [0]*700000 == [0]*700000 }}", STEPS),
    ("'in' a list of nested lists", "{{ [[0]*100000]*9 in [[[0]*100000]*9] }}", STEPS),
    ("catastrophic regular expression", "{{ " + CATASTROPHIC + " }}", REGEX_TIME),
    (
        "ten catastrophic regular expressions",
        "{{ " + " or ".join([CATASTROPHIC] * 10) + " }}",
        REGEX_TIME,
    ),
    ("parse of a long text", "{{ parseJson('[' + '0,' * 600000 + '0]') }}", VALUE_SIZE),
    (
        "object literal of large values",
        "{{ values({'a': [[0]*1000]*999, 'b': [[0]*1000]*999}) }}",
        VALUE_SIZE,
    ),
    ("slice of large data", "{{ $json.big.slice(0) }}", STEPS),
    ("text of large data", "{{ str($json.big) }}", VALUE_SIZE),
    ("large data repeated", "{{ [$json] * 100000 }}", VALUE_SIZE),
    ("sum of a long list", "{{ sum([0]*999999) }}", STEPS),
    ("max of large data", "{{ max($json.big) }}", STEPS),
    ("indexOf in large data", "{{ $json.big.indexOf(-1) }}", STEPS),
    ("input compared with itself", "{{ $input.all() == $input.all() }}", STEPS),
    ("template of large data, 100 times", "{{ $json.text }}" * 100, VALUE_SIZE),
    (
        "one rendering: 200 fields of a million",
        {"fields": [{"name": f"f{index}", "value": "{{ 'x'*999999 }}"} for index in range(200)]},
        STEPS,
    ),
    (
        "one rendering: 20,000 expressions",
        {"fields": [{"name": f"f{index}", "value": "{{ 1 + 1 }}"} for index in range(20_000)]},
        STEPS,
    ),
    ("number of 5,000 digits", "{{ int('9' * 5000) }}", ERROR),
    ("deeply nested data compared", "{{ $json.deep == $json.deep }}", ERROR),
    ("expression past 10,000 characters", "{{ " + "1+" * 6000 + "1 }}", ERROR),
    ("toFixed to 100 digits", "{{ (1.5).toFixed(100) }}", ERROR),
]


def _compile(parameters: Any) -> CompiledParameters:
    """A node's parameters compiled (as a workflow version's plan holds them)."""
    compiled, problems = compile_parameters(
        parameters if isinstance(parameters, dict) else {"value": parameters}
    )
    if problems:
        raise problems[0].error
    return compiled


def _render(parameters: Any, limits: ExpressionLimits | None = None) -> Any:
    scope = Scope(json=ITEM, input=INPUT, budget=Budget(limits or ExpressionLimits()))
    return _compile(parameters).render(scope)


def test_the_corpus_is_large_enough() -> None:
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(
    ("parameters", "expected"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE]
)
def test_hostile_expressions_fail_fast_with_a_typed_error_and_little_memory(
    parameters: Any, expected: str
) -> None:
    started = time.perf_counter()
    peak_bytes = 0
    with pytest.raises(ExpressionError) as caught:
        compiled = _compile(parameters)  # a syntax error is refused here, when it is saved
        scope = Scope(json=ITEM, input=INPUT, budget=Budget())
        tracemalloc.start()
        started = time.perf_counter()
        try:
            compiled.render(scope)
        finally:
            _, peak_bytes = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    elapsed_s = time.perf_counter() - started
    error = caught.value
    if expected == ERROR:
        assert not isinstance(error, ExpressionLimitError), str(error)
    else:
        assert isinstance(error, ExpressionLimitError), str(error)
        assert error.limit == expected, str(error)
        assert f"expression limit '{expected}' exceeded" in str(error)
    assert elapsed_s < 0.5, f"{elapsed_s:.2f} s"
    assert peak_bytes < 32 * 1024 * 1024, f"{peak_bytes / 1e6:.0f} MB"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ len([0] * 100000) }}", 100_000),
        ("{{ len('x' * 1000000) }}", 1_000_000),
        ("{{ len([[0] * 1000] * 900) }}", 900),
        ("{{ len(json([[0] * 100] * 100)) }}", 20_201),
        ("{{ len(sorted([3, 1, 2] * 3000)) }}", 9_000),
        ("{{ len(unique([1, 2, 2] * 5000)) }}", 2),
        ("{{ len('x' * 20000) }}", 20_000),
        ("{{ len(join(['ab'] * 50000, ',')) }}", 149_999),
        ("{{ len(split('a,' * 40000, ',')) }}", 40_001),
        ("{{ [0] * 50000 == [0] * 50000 }}", True),
        ("{{ 5 in [0] * 100000 }}", False),
        ("{{ round(2.567, 2) }}", 2.57),
        ("{{ round(1234, -2) }}", 1200),
        ("{{ len($json.big) }}", len(BIG)),
        ("{{ $input.all().length }}", len(INPUT)),
        ("{{ $input.all()[7].n }}", 7),
        ("{{ len($json.text + '!') }}", 100_001),
    ],
)
def test_large_work_within_the_limits_still_runs(source: str, expected: Any) -> None:
    assert _render(source) == {"value": expected}


def _steps_of(source: str) -> int:
    """The steps one rendering of `source` takes."""
    compiled, _ = compile_parameters({"value": source})
    scope = Scope(json=ITEM, budget=Budget(ExpressionLimits(max_steps=10**9)))
    compiled.render(scope)
    return scope.budget.used


def test_one_budget_covers_every_parameter_of_a_rendering() -> None:
    expression = "{{ len('x' * 999999) }}"
    per_field = _steps_of(expression)
    fits = DEFAULT_LIMITS.max_steps // per_field
    fields = [{"name": f"f{index}", "value": expression} for index in range(fits)]
    assert _render({"fields": fields})["fields"][0]["value"] == 999_999
    with pytest.raises(ExpressionLimitError) as caught:
        _render({"fields": [*fields, fields[0]]})
    assert caught.value.limit == STEPS


def test_each_rendering_starts_a_fresh_budget() -> None:
    compiled, _ = compile_parameters({"value": "{{ len([0] * 300000) }}"})  # 75,000 steps
    scope = Scope(json={}, budget=Budget())
    for _ in range(5):  # one rendering per item, as the nodes render them
        assert compiled.render(scope) == {"value": 300_000}


def test_limits_are_what_the_deployment_sets() -> None:
    generous = ExpressionLimits(max_steps=5_000_000, max_value_size=3_000_000)
    assert _render("{{ len('x' * 2000000) }}", generous) == {"value": 2_000_000}
    assert _render("{{ [0]*700000 == [0]*700000 }}", generous) == {"value": True}
    strict = ExpressionLimits(max_steps=2_000, max_value_size=1_000)
    with pytest.raises(ExpressionLimitError, match="LOOM_EXPRESSION_MAX_VALUE_SIZE"):
        _render("{{ 'x' * 1001 }}", strict)
    with pytest.raises(ExpressionLimitError, match="LOOM_EXPRESSION_MAX_STEPS") as caught:
        _render("{{ sorted([3, 1, 2] * 300) }}", strict)
    assert "more than 2,000 steps" in str(caught.value)


def test_a_deadline_stops_an_evaluation_between_budget_boundaries() -> None:
    # Limits raised so far that only the deadline can stop the work.
    limits = ExpressionLimits(max_steps=10**12, max_value_size=10**9)
    compiled, _ = compile_parameters({"value": "{{ $json.big == $json.big }}"})
    scope = Scope(json=ITEM, budget=Budget(limits, deadline=time.monotonic() - 1))
    with pytest.raises(DeadlineReached):
        compiled.render(scope)
