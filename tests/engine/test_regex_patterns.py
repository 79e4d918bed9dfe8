"""Regular expressions from workflow authors: refused before compiling when compiling them
would hold the event loop, compiled once, and checked on save when they are literal.

Compiling cannot be interrupted, so every refusal must be quick: each case runs well under
the half second the hostile corpora allow.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.executor import Executor, RunOptions, RunRequest
from engine.expressions import (
    Budget,
    ExpressionEvaluationError,
    ExpressionLimitError,
    Scope,
    compile_parameters,
)
from engine.graph import Edge, Graph, Node
from engine.memory_recorder import MemoryRecorder
from engine.node_types import load_registry
from engine.nodes.base import NodeError, RunInfo
from engine.plan import compile_plan
from engine.validation import validate_graph
from tests.engine.node_runner import run_node

REGEX_SIZE = "regex size"
REGISTRY = load_registry()

# (case, pattern): each takes seconds, or gigabytes, to compile.
COSTLY = [
    ("repeats of repeats", "(?:(?:a{1000}){1000}){1000}"),
    ("a count near 2^32", "a{4294967294}"),
    ("an alternation repeated near 2^32 times", "(?:x|y){4000000000}"),
    ("repeats of a group", "(?:a{100}){1000}"),
    ("a repeat of 100,000", "a{100000}"),
    ("verbose mode spacing out a count", "(?x)a{1 0 0 0 0 0}"),
    ("a 1 MB pattern", "a" * 1_000_000),
    ("an alternation of 120,000 words", "|".join(f"w{index}" for index in range(120_000))),
    ("groups nested 500 deep", "(" * 500 + "a" + ")" * 500),
    ("repeats nested 40 deep", "(?:" * 40 + "a" + ")+" * 40),
]
INVALID = ["(", "[z-a]", "a{3,2}", "(?V0)(?V1)", "\\L<names>", "(?P<1a>x)", "\\p{NoSuchProperty}"]


def _matches(pattern: str) -> Any:
    """`matches()` with a pattern read from the item, as a rendering evaluates it."""
    compiled, problems = compile_parameters({"value": "{{ matches($json.text, $json.pattern) }}"})
    assert not problems
    return compiled.render(Scope(json={"text": "aaa", "pattern": pattern}, budget=Budget()))


def _regex_condition(pattern: str, ignore_case: bool = False) -> Any:
    parameters = {
        "ignoreCase": ignore_case,
        "conditions": [{"left": "{{ $json.text }}", "operator": "regex", "right": "{{ $json.p }}"}],
    }
    return run_node("if", parameters, [{"text": "aaa", "p": pattern}])


@pytest.mark.parametrize(("case", "pattern"), COSTLY, ids=[case for case, _ in COSTLY])
def test_a_costly_pattern_in_matches_is_refused_before_it_is_compiled(
    case: str, pattern: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionLimitError) as caught:
        _matches(pattern)
    assert time.perf_counter() - started < 0.25
    assert caught.value.limit == REGEX_SIZE
    assert "regular expression too costly to compile" in str(caught.value)


@pytest.mark.parametrize(("case", "pattern"), COSTLY, ids=[case for case, _ in COSTLY])
async def test_a_costly_pattern_in_a_regex_condition_is_refused_before_it_is_compiled(
    case: str, pattern: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(NodeError) as caught:
        await _regex_condition(pattern, ignore_case=True)
    assert time.perf_counter() - started < 0.25
    error = caught.value
    assert error.error_type == "EXPRESSION_LIMIT"
    assert error.details == {"parameter": "conditions[0].right", "limit": REGEX_SIZE}
    assert "Condition 'conditions[0].right'" in error.message
    assert "regular expression too costly to compile" in error.message


@pytest.mark.parametrize("pattern", INVALID)
def test_an_invalid_pattern_in_matches_is_a_typed_error(pattern: str) -> None:
    with pytest.raises(ExpressionEvaluationError, match="invalid regular expression") as caught:
        _matches(pattern)
    assert not isinstance(caught.value, ExpressionLimitError)


@pytest.mark.parametrize("pattern", INVALID)
async def test_an_invalid_pattern_in_a_regex_condition_is_a_typed_error(pattern: str) -> None:
    with pytest.raises(NodeError, match="is not a valid regular expression") as caught:
        await _regex_condition(pattern)
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert caught.value.details == {"parameter": "conditions[0].right"}


def test_patterns_within_the_limits_still_work() -> None:
    for pattern, text, expected in [
        (r"^[\w.+-]+@[\w-]+\.[\w.]+$", "ada@example.com", True),
        (r"\d{4}-\d{2}-\d{2}", "on 2025-01-31", True),
        ("(?:ab){1000}", "ab" * 1000, True),
        ("|".join(f"word{index}" for index in range(100)), "say word99", True),
        ("(?i)hello", "HELLO", True),
        (".{0,100000}x", "y", False),  # a large maximum is not unrolled: cheap
    ]:
        compiled, _ = compile_parameters({"value": "{{ matches($json.text, $json.pattern) }}"})
        scope = Scope(json={"text": text, "pattern": pattern}, budget=Budget())
        assert compiled.render(scope) == {"value": expected}, pattern


async def test_a_pattern_is_compiled_once_for_many_items() -> None:
    from engine.expressions.patterns import cache_counts

    pattern = f"^item-{time.perf_counter_ns()}$"  # new to this process's cache
    items = [{"name": f"item-{index}"} for index in range(1000)]
    condition = {"left": "{{ $json.name }}", "operator": "regex", "right": pattern}
    parameters = {"conditions": [condition]}
    _, misses_before = cache_counts()
    outputs = await run_node("filter", parameters, items)
    _, misses_after = cache_counts()
    assert outputs["main"] == [] and len(outputs["discarded"]) == 1000
    assert misses_after - misses_before == 1


def _node_issues(node: Node) -> list[tuple[str, str | None, str]]:
    report = validate_graph(Graph(nodes=(node,), edges=()), REGISTRY)
    assert report.ok, report.structural
    return [(problem.code, problem.field, problem.message) for problem in report.all_problems()]


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(?:(?:a{1000}){1000}){1000}", "Condition '{field}': expression limit 'regex size'"),
        ("([a-", "Parameter '{field}' is not a valid regular expression"),
    ],
)
def test_a_literal_pattern_of_a_condition_is_checked_on_save(pattern: str, words: str) -> None:
    conditions = [
        {"left": "{{ $json.a }}", "operator": "equals", "right": "(("},
        {"left": "{{ $json.a }}", "operator": "regex", "right": pattern},
    ]
    for node in [
        Node("n", "If", "if", parameters={"conditions": conditions}),
        Node("n", "Filter", "filter", parameters={"conditions": conditions}),
        Node("n", "Switch", "switch", parameters={"rules": [{"conditions": conditions}]}),
    ]:
        issues = _node_issues(node)
        assert len(issues) == 1, issues
        code, field, message = issues[0]
        prefix = "rules[0]." if node.type == "switch" else ""
        assert code == "INVALID_REGEX"
        assert field == f"parameters.{prefix}conditions[1].right"
        assert words.format(field=f"{prefix}conditions[1].right") in message


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("{{ matches($json.a, '(?:(?:a{1000}){1000}){1000}') }}", "too costly to compile"),
        ("{{ $json.a.matches('a{4294967294}') }}", "too costly to compile"),
        ("{{ matches($json.a, '([a-') }}", "invalid regular expression"),
    ],
)
def test_a_literal_pattern_of_matches_is_checked_on_save(expression: str, words: str) -> None:
    node = Node("n", "Set", "set", parameters={"fields": [{"name": "x", "value": expression}]})
    issues = _node_issues(node)
    assert len(issues) == 1, issues
    code, field, message = issues[0]
    assert (code, field) == ("EXPRESSION_SYNTAX", "parameters.fields[0].value")
    assert words in message


def test_a_pattern_of_an_expression_is_not_checked_on_save() -> None:
    conditions = [{"left": "{{ $json.a }}", "operator": "regex", "right": "{{ $json.p }}("}]
    assert _node_issues(Node("n", "If", "if", parameters={"conditions": conditions})) == []


def test_compiling_each_distinct_pattern_of_a_rendering_costs_steps() -> None:
    source = " or ".join(f"matches($json.text, $json.p{index})" for index in range(10))
    compiled, _ = compile_parameters({"value": "{{ " + source + " }}"})
    long_pattern = "x" * 900  # 14,400 steps to compile: ten of them pass the 100,000
    distinct = {f"p{index}": f"{long_pattern}{index}" for index in range(10)}
    with pytest.raises(ExpressionLimitError) as caught:
        compiled.render(Scope(json={"text": "y", **distinct}, budget=Budget()))
    assert caught.value.limit == "steps"
    # The same pattern ten times is compiled, and charged, once.
    same = {f"p{index}": long_pattern for index in range(10)}
    assert compiled.render(Scope(json={"text": "y", **same}, budget=Budget())) == {"value": False}


async def test_a_refused_pattern_fails_the_node_naming_node_parameter_and_limit() -> None:
    parameters = {"fields": [{"name": "ok", "value": "{{ matches($json.a, $json.p) }}"}]}
    nodes = (
        Node("start", "Start", "manual_trigger"),
        Node("set", "Set", "set", parameters=parameters),
    )
    graph = Graph(nodes=nodes, edges=(Edge("start", "set"),))
    request = RunRequest(
        execution_id="patterns",
        plan=compile_plan("patterns", graph, REGISTRY),
        info=RunInfo(execution_id="patterns"),
        input={"a": "aaa", "p": "a{4294967294}"},
    )
    outcome = await Executor(MemoryRecorder()).run(request, RunOptions())
    error = outcome.error
    assert error is not None and error.type == "EXPRESSION_LIMIT", error
    assert error.message.startswith("node 'Set' in parameter 'fields[0].value': ")
    assert "expression limit 'regex size' exceeded" in error.message
    assert error.details["limit"] == REGEX_SIZE
    assert error.details["parameter"] == "fields[0].value"
