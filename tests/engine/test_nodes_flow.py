"""Behaviours of the flow node types: manual_trigger, noop, if, filter, switch, merge,
stop_and_error, wait."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.expressions import ExpressionEvaluationError
from engine.expressions.budget import DEFAULT_LIMITS
from engine.nodes.base import NodeError
from engine.nodes.conditions import OPERATORS
from tests.engine.node_runner import BUILTINS, context, main, run_node

PEOPLE = [
    {"name": "Ada", "age": 36, "email": "ada@example.com", "tags": ["admin", "dev"]},
    {"name": "bob", "age": 17, "email": "", "tags": []},
    {"name": "Cy", "age": 52, "tags": ["dev"]},
]


def condition(left: Any, operator: str, right: Any = None) -> dict[str, Any]:
    entry = {"left": left, "operator": operator}
    return entry if right is None else {**entry, "right": right}


async def check(operator: str, left: Any, right: Any = None, *, ignore_case: bool = False) -> bool:
    """Whether an `if` with this one condition sends a single item to `true`."""
    parameters = {"conditions": [condition(left, operator, right)], "ignoreCase": ignore_case}
    outputs = await run_node("if", parameters, [{}])
    assert len(outputs["true"]) + len(outputs["false"]) == 1
    return bool(outputs["true"])


def test_every_builtin_has_a_behaviour() -> None:
    assert all(callable(node_type.execute) for node_type in BUILTINS.values())


async def test_manual_trigger_and_noop_pass_items_through() -> None:
    assert main(await run_node("manual_trigger", {}, [{"input": 1}])) == [{"input": 1}]
    assert main(await run_node("noop", {}, PEOPLE)) == PEOPLE
    assert main(await run_node("noop", {})) == []


# Every operator, with the type rules in `engine.nodes.conditions`.
OPERATOR_CASES: list[tuple[str, Any, Any, bool, bool]] = [
    # operator, left, right, ignore_case, expected
    ("equals", "paid", "paid", False, True),
    ("equals", "Paid", "paid", False, False),
    ("equals", "Paid", "paid", True, True),
    ("equals", 10, "10", False, True),
    ("equals", "10.0", 10, False, True),
    ("equals", 1, 1.0, False, True),
    ("equals", "007", "7", False, False),
    ("equals", True, "true", False, True),
    ("equals", False, "TRUE", False, False),
    ("equals", True, 1, False, False),
    ("equals", None, None, False, True),
    ("equals", None, "", False, False),
    ("equals", [1, 2], [1, 2], False, True),
    ("equals", {"a": 1}, {"a": 2}, False, False),
    ("equals", 10, "ten", False, False),
    ("not_equals", "a", "b", False, True),
    ("not_equals", "A", "a", True, False),
    ("not_equals", 5, "5", False, False),
    ("gt", 10, 9, False, True),
    ("gt", "10", "9", False, True),
    ("gt", "b", "a", False, True),
    ("gt", "B", "a", False, False),
    ("gt", "B", "a", True, True),
    ("gt", "2025-02-01T00:00:00Z", "2025-01-31T23:59:59Z", False, True),
    ("gt", None, 1, False, False),
    ("gt", [2], 1, False, False),
    ("gt", 5, 5, False, False),
    ("gte", 5, 5, False, True),
    ("gte", 4.5, "5", False, False),
    ("lt", 4.5, "5", False, True),
    ("lt", "abc", 5, False, False),
    ("lte", 5, 5.0, False, True),
    ("lte", 6, 5, False, False),
    ("contains", "hello world", "lo w", False, True),
    ("contains", "Hello", "hell", False, False),
    ("contains", "Hello", "hell", True, True),
    ("contains", "order 42", 42, False, True),
    ("contains", ["a", "B"], "b", False, False),
    ("contains", ["a", "B"], "b", True, True),
    ("contains", [1, 2], "2", False, True),
    ("contains", {"key": 1}, "key", False, True),
    ("contains", {"Key": 1}, "key", True, True),
    ("contains", None, "x", False, False),
    ("contains", "text", None, False, False),
    ("not_contains", "hello", "z", False, True),
    ("not_contains", ["x"], "x", False, False),
    ("starts_with", "Invoice 7", "Invoice", False, True),
    ("starts_with", "Invoice 7", "invoice", False, False),
    ("starts_with", "Invoice 7", "invoice", True, True),
    ("starts_with", 12345, 12, False, True),
    ("starts_with", None, "", False, False),
    ("ends_with", "report.pdf", ".pdf", False, True),
    ("ends_with", "report.PDF", ".pdf", True, True),
    ("ends_with", ["report.pdf"], ".pdf", False, False),
    ("regex", "ada@example.com", r"^\w+@example\.com$", False, True),
    ("regex", "ADA", "^ada$", False, False),
    ("regex", "ADA", "^ada$", True, True),
    ("regex", 2025, r"^\d{4}$", False, True),
    ("regex", "in the middle", "middle", False, True),
    ("regex", None, ".*", False, False),
    ("exists", "", None, False, True),
    ("exists", 0, None, False, True),
    ("exists", None, None, False, False),
    ("not_exists", None, None, False, True),
    ("not_exists", False, None, False, False),
    ("is_empty", None, None, False, True),
    ("is_empty", "", None, False, True),
    ("is_empty", [], None, False, True),
    ("is_empty", {}, None, False, True),
    ("is_empty", " ", None, False, False),
    ("is_empty", 0, None, False, False),
    ("is_empty", False, None, False, False),
    ("is_not_empty", [0], None, False, True),
    ("is_not_empty", "", None, False, False),
]


@pytest.mark.parametrize(
    ("operator", "left", "right", "ignore_case", "expected"),
    OPERATOR_CASES,
    ids=[f"{case[0]}-{index}" for index, case in enumerate(OPERATOR_CASES)],
)
async def test_operator(
    operator: str, left: Any, right: Any, ignore_case: bool, expected: bool
) -> None:
    assert await check(operator, left, right, ignore_case=ignore_case) is expected


def test_every_operator_is_covered() -> None:
    assert {case[0] for case in OPERATOR_CASES} == set(OPERATORS)


async def test_if_evaluates_expressions_per_item() -> None:
    parameters = {"conditions": [condition("{{ $json.age }}", "gte", 18)]}
    outputs = await run_node("if", parameters, PEOPLE)
    assert [item["name"] for item in outputs["true"]] == ["Ada", "Cy"]
    assert [item["name"] for item in outputs["false"]] == ["bob"]
    assert outputs["true"][0] is PEOPLE[0]  # passed on, not copied


async def test_right_side_may_be_an_expression_too() -> None:
    parameters = {"conditions": [condition("{{ $json.age }}", "gt", "{{ $input.first().age }}")]}
    outputs = await run_node("if", parameters, PEOPLE)
    assert [item["name"] for item in outputs["true"]] == ["Cy"]


async def test_if_combines_with_all_or_any() -> None:
    conditions = [
        condition("{{ $json.age }}", "gte", 18),
        condition("{{ $json.tags }}", "contains", "admin"),
    ]
    all_of = await run_node("if", {"conditions": conditions, "combine": "all"}, PEOPLE)
    any_of = await run_node("if", {"conditions": conditions, "combine": "any"}, PEOPLE)
    assert [item["name"] for item in all_of["true"]] == ["Ada"]
    assert [item["name"] for item in any_of["true"]] == ["Ada", "Cy"]
    assert [item["name"] for item in any_of["false"]] == ["bob"]


async def test_constant_conditions_route_every_item_at_once() -> None:
    outputs = await run_node("if", {"conditions": [condition(1, "lt", 2)]}, PEOPLE)
    assert outputs["true"] == PEOPLE
    assert outputs["false"] == []


async def test_missing_field_reads_as_null() -> None:
    parameters = {"conditions": [condition("{{ $json.email }}", "exists")]}
    outputs = await run_node("if", parameters, PEOPLE)
    assert [item["name"] for item in outputs["true"]] == ["Ada", "bob"]
    parameters = {"conditions": [condition("{{ $json.email }}", "is_not_empty")]}
    outputs = await run_node("if", parameters, PEOPLE)
    assert [item["name"] for item in outputs["true"]] == ["Ada"]


async def test_catastrophic_regex_fails_fast() -> None:
    parameters = {"conditions": [condition("{{ $json.text }}", "regex", "(a+)+$")]}
    started = time.perf_counter()
    with pytest.raises(NodeError) as caught:
        await run_node("filter", parameters, [{"text": "a" * 5_000 + "!"}])
    assert time.perf_counter() - started < DEFAULT_LIMITS.regex_timeout_s + 1.0
    assert caught.value.error_type == "REGEX_TIMEOUT"
    assert "conditions[0].right" in caught.value.message
    assert caught.value.details == {"parameter": "conditions[0].right", "limit": "regex time"}


# A million numbers and a twin: a condition on them is millions of comparisons per item.
MANY = list(range(1_000_000))
MANY_TWIN = list(range(1_000_000))


@pytest.mark.parametrize(
    ("type_name", "parameters"),
    [
        ("filter", {"conditions": [condition("{{ $json.many }}", "contains", -1)]}),
        ("if", {"conditions": [condition("{{ $json.many }}", "equals", "{{ $json.twin }}")]}),
        ("if", {"conditions": [condition("{{ $json.many }}", "contains", [1, 2])]}),
        (
            "switch",
            {"rules": [{"conditions": [condition("{{ $json.many }}", "not_contains", 5)]}]},
        ),
    ],
)
async def test_conditions_on_large_data_fail_with_expression_limit(
    type_name: str, parameters: dict[str, Any]
) -> None:
    item = {"many": MANY, "twin": MANY_TWIN}
    inputs = {"main": [item]}
    started = time.perf_counter()
    with pytest.raises(NodeError) as caught:  # the behaviour alone: no deep copy of the items
        await BUILTINS[type_name].execute(context(type_name, parameters, inputs), inputs)
    assert time.perf_counter() - started < 0.25
    assert caught.value.error_type == "EXPRESSION_LIMIT"
    assert caught.value.details["limit"] == "steps"
    assert caught.value.details["parameter"].endswith("conditions[0]")


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"conditions": [condition("x", "regex", "([a-z")]}, "conditions[0].right"),
        ({"conditions": [condition("x", "regex", 5)]}, "conditions[0].right"),
        ({"conditions": [condition("x", "like", "y")]}, "conditions[0].operator"),
        ({"conditions": [condition("x", "equals", "y")], "combine": "most"}, "combine"),
        ({"conditions": [condition("x", "equals", "y")], "ignoreCase": "yes"}, "ignoreCase"),
        ({"conditions": "{{ $json.name }}"}, "conditions"),
        ({"conditions": ["equals"]}, "conditions[0]"),
    ],
)
async def test_bad_condition_parameters(parameters: dict[str, Any], field: str) -> None:
    with pytest.raises(NodeError) as caught:
        await run_node("if", parameters, PEOPLE)
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert f"'{field}'" in caught.value.message
    assert caught.value.details["parameter"] == field


async def test_failing_expression_is_reported_as_such() -> None:
    parameters = {"conditions": [condition("{{ $json.address.city }}", "equals", "Oslo")]}
    with pytest.raises(ExpressionEvaluationError):
        await run_node("if", parameters, [{"address": None}])


async def test_filter_keeps_matches_and_discards_the_rest() -> None:
    parameters = {
        "conditions": [condition("{{ $json.name }}", "regex", "^[a-c]")],
        "ignoreCase": True,
    }
    outputs = await run_node("filter", parameters, [*PEOPLE, {"name": "Dee"}])
    assert [item["name"] for item in outputs["main"]] == ["Ada", "bob", "Cy"]
    assert [item["name"] for item in outputs["discarded"]] == ["Dee"]


def rule(*conditions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"conditions": list(conditions), **extra}


SWITCH_RULES = [
    rule(condition("{{ $json.age }}", "lt", 18), label="minors"),
    rule(condition("{{ $json.tags }}", "contains", "dev")),
    rule(condition("{{ $json.tags }}", "contains", "admin")),
]


def names(outputs: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {port: [item["name"] for item in items] for port, items in outputs.items() if items}


async def test_switch_sends_each_item_to_the_first_matching_rule() -> None:
    outputs = await run_node("switch", {"rules": SWITCH_RULES}, [*PEOPLE, {"name": "Dee"}])
    assert names(outputs) == {"output0": ["bob"], "output1": ["Ada", "Cy"], "fallback": ["Dee"]}
    assert set(outputs) == {"output0", "output1", "output2", "output3", "fallback"}


async def test_switch_can_send_to_every_matching_rule() -> None:
    parameters = {"rules": SWITCH_RULES, "sendToAllMatching": True}
    outputs = await run_node("switch", parameters, PEOPLE)
    assert names(outputs) == {"output0": ["bob"], "output1": ["Ada", "Cy"], "output2": ["Ada"]}


async def test_switch_rules_combine_and_ignore_case() -> None:
    rules = [
        rule(
            condition("{{ $json.name }}", "equals", "BOB"),
            condition("{{ $json.age }}", "gt", 50),
            combine="any",
        )
    ]
    outputs = await run_node("switch", {"rules": rules, "ignoreCase": True}, PEOPLE)
    assert names(outputs) == {"output0": ["bob", "Cy"], "fallback": ["Ada"]}


async def test_switch_with_constant_rules_routes_everything_at_once() -> None:
    rules = [rule(condition(1, "gt", 2)), rule(condition("a", "equals", "a"))]
    outputs = await run_node("switch", {"rules": rules}, PEOPLE)
    assert outputs["output1"] == PEOPLE
    assert outputs["fallback"] == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"rules": []}, "rules"),
        ({"rules": [rule(condition(1, "equals", 1))] * 5}, "rules"),
        ({"rules": ["x"]}, "rules[0]"),
        ({"rules": [rule(condition(1, "equals", 1), combine="some")]}, "rules[0].combine"),
        ({"rules": [rule(condition(1, "nope", 1))]}, "rules[0].conditions[0].operator"),
        ({"rules": [rule(condition(1, "equals", 1))], "sendToAllMatching": 1}, "sendToAllMatching"),
    ],
)
async def test_switch_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    with pytest.raises(NodeError) as caught:
        await run_node("switch", parameters, PEOPLE)
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert caught.value.details["parameter"] == field


# Merge

CUSTOMERS = [
    {"id": 1, "name": "Ada"},
    {"id": 2, "name": "Bob"},
    {"id": 3, "name": "Cy"},
]
ORDERS = [
    {"customerId": 2, "id": 2, "total": 10},
    {"customerId": 1, "id": 1, "total": 20},
    {"customerId": 2, "id": 2, "total": 30},
    {"customerId": 9, "id": 9, "total": 40},
]


async def merge(parameters: dict[str, Any], **ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return main(await run_node("merge", parameters, **ports))


async def test_merge_append() -> None:
    assert await merge({}, input1=CUSTOMERS, input2=ORDERS) == [*CUSTOMERS, *ORDERS]
    assert await merge({"mode": "append"}, input2=ORDERS) == ORDERS
    assert await merge({"mode": "append"}, input1=CUSTOMERS) == CUSTOMERS


async def test_merge_choose_branch() -> None:
    both = {"input1": CUSTOMERS, "input2": ORDERS}
    assert await merge({"mode": "choose_branch"}, **both) == CUSTOMERS
    assert await merge({"mode": "choose_branch", "branch": "input2"}, **both) == ORDERS
    assert await merge({"mode": "choose_branch", "branch": "input2"}, input1=CUSTOMERS) == []


async def test_merge_by_position() -> None:
    first = [{"a": 1, "shared": "left"}, {"a": 2}, {"a": 3}]
    second = [{"b": 1, "shared": "right"}, {"b": 2}]
    merged = await merge({"mode": "combine_by_position"}, input1=first, input2=second)
    assert merged == [{"a": 1, "shared": "right", "b": 1}, {"a": 2, "b": 2}]
    parameters = {"mode": "combine_by_position", "includeUnpaired": True}
    assert await merge(parameters, input1=first, input2=second) == [*merged, {"a": 3}]
    assert await merge(parameters, input1=second, input2=first) == [
        {"b": 1, "shared": "left", "a": 1},
        {"b": 2, "a": 2},
        {"a": 3},
    ]


async def test_merge_by_position_with_a_missing_input() -> None:
    assert await merge({"mode": "combine_by_position"}, input1=CUSTOMERS) == []
    parameters = {"mode": "combine_by_position", "includeUnpaired": True}
    assert await merge(parameters, input2=ORDERS) == ORDERS


def by_key(join: str, **extra: Any) -> dict[str, Any]:
    return {"mode": "combine_by_key", "key": "id", "input2Key": "customerId", "join": join, **extra}


async def test_merge_inner_join() -> None:
    merged = await merge(by_key("inner"), input1=CUSTOMERS, input2=ORDERS)
    # In input 1's order; every match of one item, in input 2's order; input 2 wins clashes.
    assert merged == [
        {"id": 1, "name": "Ada", "customerId": 1, "total": 20},
        {"id": 2, "name": "Bob", "customerId": 2, "total": 10},
        {"id": 2, "name": "Bob", "customerId": 2, "total": 30},
    ]


async def test_merge_left_join_keeps_unmatched_input1_items() -> None:
    merged = await merge(by_key("left"), input1=CUSTOMERS, input2=ORDERS)
    assert [item.get("total") for item in merged] == [20, 10, 30, None]
    assert merged[-1] is CUSTOMERS[2]


async def test_merge_outer_join_keeps_unmatched_items_of_both() -> None:
    merged = await merge(by_key("outer"), input1=CUSTOMERS, input2=ORDERS)
    assert [item.get("total") for item in merged] == [20, 10, 30, None, 40]
    assert merged[-1] == ORDERS[3]


@pytest.mark.parametrize(
    ("join", "present", "expected"),
    [
        ("inner", "input1", []),
        ("inner", "input2", []),
        ("left", "input1", CUSTOMERS),
        ("left", "input2", []),
        ("outer", "input1", CUSTOMERS),
        ("outer", "input2", ORDERS),
    ],
)
async def test_merge_by_key_with_a_missing_input(
    join: str, present: str, expected: list[dict[str, Any]]
) -> None:
    items = CUSTOMERS if present == "input1" else ORDERS
    assert await merge(by_key(join), **{present: items}) == expected


async def test_merge_key_values_match_only_when_equal_as_json() -> None:
    first = [
        {"k": 1, "from": "int"},
        {"k": "1", "from": "text"},
        {"k": True, "from": "bool"},
        {"k": None, "from": "null"},
        {"from": "missing"},
        {"k": {"b": 1, "a": 2}, "from": "object"},
    ]
    second = [
        {"k": 1.0, "to": "float"},
        {"k": None, "to": "null"},
        {"k": {"a": 2, "b": 1}, "to": "object"},
    ]
    parameters = {"mode": "combine_by_key", "key": "k"}
    merged = await merge(parameters, input1=first, input2=second)
    assert [(item["from"], item["to"]) for item in merged] == [
        ("int", "float"),
        ("object", "object"),
    ]


async def test_merge_by_nested_key_named_by_an_expression() -> None:
    first = [{"customer": {"id": 7}, "order": "A"}]
    second = [{"customer": {"id": 7, "name": "Ada"}}]
    parameters = {"mode": "combine_by_key", "key": "{{ 'customer' + '.id' }}"}
    merged = await merge(parameters, input1=first, input2=second)
    assert merged == [{"customer": {"id": 7, "name": "Ada"}, "order": "A"}]


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"mode": "zip"}, "mode"),
        ({"mode": "combine_by_key"}, "key"),
        ({"mode": "combine_by_key", "key": ""}, "key"),
        ({"mode": "combine_by_key", "key": "id", "input2Key": 5}, "input2Key"),
        ({"mode": "combine_by_key", "key": "id", "join": "cross"}, "join"),
        ({"mode": "choose_branch", "branch": "input3"}, "branch"),
        ({"mode": "combine_by_position", "includeUnpaired": "no"}, "includeUnpaired"),
    ],
)
async def test_merge_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    with pytest.raises(NodeError) as caught:
        await merge(parameters, input1=CUSTOMERS, input2=ORDERS)
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert caught.value.details["parameter"] == field


# Stop and Error, Wait


async def test_stop_and_error_raises_the_rendered_message() -> None:
    parameters = {"message": "Order {{ $json.id }} has no customer"}
    with pytest.raises(NodeError) as caught:
        await run_node("stop_and_error", parameters, [{"id": 42}, {"id": 43}])
    assert caught.value.error_type == "STOP_AND_ERROR"
    assert caught.value.message == "Order 42 has no customer"
    assert not caught.value.retryable


async def test_stop_and_error_without_a_message_still_says_why() -> None:
    with pytest.raises(NodeError, match="Stop and Error"):
        await run_node("stop_and_error", {"message": "{{ $json.reason }}"}, [{}])


async def waited(parameters: dict[str, Any], items: list[dict[str, Any]]) -> list[float]:
    inputs = {"main": items}
    ctx = context("wait", parameters, inputs, recording=True)
    assert main(await run_node("wait", parameters, items, ctx=ctx)) == items
    return ctx.slept  # type: ignore[attr-defined, no-any-return]


@pytest.mark.parametrize(
    ("amount", "unit", "seconds"),
    [(2, "seconds", 2), (1.5, "minutes", 90), (2, "hours", 7200), (1, "days", 86400)],
)
async def test_wait_for_an_interval(amount: float, unit: str, seconds: float) -> None:
    assert await waited({"amount": amount, "unit": unit}, [{"a": 1}]) == [seconds]


async def test_wait_amount_from_an_expression_and_zero_means_no_wait() -> None:
    assert await waited({"amount": "{{ $json.delay }}"}, [{"delay": 3}, {"delay": 9}]) == [3]
    assert await waited({"amount": 0}, [{"a": 1}]) == []
    assert await waited({"amount": "0.5"}, [{"a": 1}]) == [0.5]


async def test_wait_really_sleeps_and_passes_items_on() -> None:
    started = time.perf_counter()
    assert main(await run_node("wait", {"amount": 0.05}, [{"a": 1}])) == [{"a": 1}]
    assert time.perf_counter() - started >= 0.045


async def test_wait_until_a_time() -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    slept = await waited({"resume": "at_time", "until": later.isoformat()}, [{}])
    assert len(slept) == 1 and 7190 < slept[0] <= 7200
    naive = (datetime.now(UTC) + timedelta(minutes=1)).replace(tzinfo=None)
    slept = await waited({"resume": "at_time", "until": naive.isoformat(sep=" ")}, [{}])
    assert len(slept) == 1 and 50 < slept[0] <= 60  # read as UTC
    assert await waited({"resume": "at_time", "until": "2020-01-01T00:00:00Z"}, [{}]) == []
    parameters = {"resume": "at_time", "until": "{{ $json.remindAt }}"}
    assert await waited(parameters, [{"remindAt": "2020-01-01T09:00:00+02:00"}]) == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"amount": "soon"}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "{{ $json.missing }}"}, "amount"),
        ({"amount": 1, "unit": "weeks"}, "unit"),
        ({"resume": "at_time", "until": "next tuesday"}, "until"),
        ({"resume": "at_time"}, "until"),
        ({"resume": "later"}, "resume"),
    ],
)
async def test_wait_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    with pytest.raises(NodeError) as caught:
        await waited(parameters, [{"a": 1}])
    assert caught.value.error_type == "INVALID_PARAMETER"
    assert caught.value.details["parameter"] == field
    assert f"'{field}'" in caught.value.message
