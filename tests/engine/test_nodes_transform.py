"""Behaviours of the transform node types: set, sort, limit, aggregate, split_out."""

from __future__ import annotations

import gc
import math
import time
from typing import Any

import pytest

from engine.nodes.base import NodeError
from engine.nodes.paths import MISSING, delete_path, get_path, set_path
from tests.engine.node_runner import BUILTINS, context, longest_hold_s, main, run_node

ORDERS = [
    {"id": 1, "price": 2.5, "qty": 4, "customer": {"name": "Ada", "city": "Oslo"}},
    {"id": 2, "price": 10, "qty": 1, "customer": {"name": "Bob", "city": "Rome"}},
]


async def run(type_name: str, parameters: dict[str, Any], items: list[Any]) -> list[Any]:
    return main(await run_node(type_name, parameters, items))


async def invalid(type_name: str, parameters: dict[str, Any], items: list[Any]) -> NodeError:
    with pytest.raises(NodeError) as caught:
        await run_node(type_name, parameters, items)
    assert caught.value.error_type == "INVALID_PARAMETER"
    return caught.value


# Paths


def test_paths_read_and_write_nested_objects_without_touching_the_original() -> None:
    item = {"a": {"b": {"c": 1}, "keep": True}, "list": [{"x": 5}], "n": 3}
    assert get_path(item, "a.b.c") == 1
    assert get_path(item, "list.0.x") == 5
    assert get_path(item, "list.1.x") is MISSING
    assert get_path(item, "n.x") is MISSING
    assert get_path(item, "a..b") is MISSING
    copy = dict(item)
    set_path(copy, "a.b.d", 2)
    set_path(copy, "n.deep", 4)
    delete_path(copy, "a.keep")
    delete_path(copy, "nothing.here")
    assert copy == {"a": {"b": {"c": 1, "d": 2}}, "list": [{"x": 5}], "n": {"deep": 4}}
    assert item == {"a": {"b": {"c": 1}, "keep": True}, "list": [{"x": 5}], "n": 3}


# Set


async def test_set_constant_values() -> None:
    parameters = {"fields": [{"name": "currency", "value": "EUR"}, {"name": "cleared"}]}
    result = await run("set", parameters, ORDERS)
    assert result == [{**order, "currency": "EUR", "cleared": None} for order in ORDERS]


async def test_set_values_from_expressions_per_item() -> None:
    parameters = {
        "fields": [
            {"name": "total", "value": "{{ $json.price * $json.qty }}"},
            {"name": "label", "value": "#{{ $json.id }} for {{ $json.customer.name }}"},
            {"name": "position", "value": "{{ $itemIndex }}"},
        ]
    }
    result = await run("set", parameters, ORDERS)
    assert [(item["total"], item["label"], item["position"]) for item in result] == [
        (10.0, "#1 for Ada", 0),
        (10, "#2 for Bob", 1),
    ]


async def test_set_keep_only_set() -> None:
    parameters = {
        "fields": [{"name": "who", "value": "{{ $json.customer.name }}"}],
        "keepOnlySet": True,
    }
    assert await run("set", parameters, ORDERS) == [{"who": "Ada"}, {"who": "Bob"}]


async def test_set_dotted_paths_write_nested_objects() -> None:
    parameters = {
        "fields": [
            {"name": "customer.country", "value": "{{ $json.customer.city == 'Oslo' }}"},
            {"name": "shipping.address.city", "value": "Paris"},
            {"name": "price.net", "value": 1},
        ]
    }
    result = await run("set", parameters, ORDERS)
    assert result[0]["customer"] == {"name": "Ada", "city": "Oslo", "country": True}
    assert result[0]["shipping"] == {"address": {"city": "Paris"}}
    assert result[0]["price"] == {"net": 1}  # a number on the way is replaced
    assert result[0]["customer"] is not ORDERS[0]["customer"]
    assert result[1]["customer"]["country"] is False
    keep_only = {"fields": [{"name": "a.b", "value": 1}], "keepOnlySet": True}
    assert await run("set", keep_only, ORDERS) == [{"a": {"b": 1}}, {"a": {"b": 1}}]


async def test_set_field_names_may_be_expressions() -> None:
    parameters = {"fields": [{"name": "{{ 'by_' + $json.customer.city }}", "value": 1}]}
    result = await run("set", parameters, ORDERS)
    assert [item.get("by_Oslo") for item in result] == [1, None]
    assert [item.get("by_Rome") for item in result] == [None, 1]


async def test_set_does_not_change_its_input() -> None:
    # run_node compares a deep copy of the input with the input after the run.
    parameters = {"fields": [{"name": "customer.name", "value": "{{ $json.id }}"}]}
    result = await run("set", parameters, ORDERS)
    result[0]["customer"]["city"] = "changed"
    assert ORDERS[0]["customer"]["city"] == "Oslo"


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"fields": [{"name": ""}]}, "fields[0].name"),
        ({"fields": [{"name": "a"}, {"name": "{{ $json.qty }}"}]}, "fields[1].name"),
        ({"fields": [{"value": 1}]}, "fields[0].name"),
        ({"fields": []}, "fields"),
        ({"fields": ["a"]}, "fields[0]"),
        ({"fields": [{"name": "a"}], "keepOnlySet": "{{ 'yes' }}"}, "keepOnlySet"),
    ],
)
async def test_set_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    error = await invalid("set", parameters, ORDERS)
    assert error.details["parameter"] == field
    assert f"'{field}'" in error.message


async def test_set_is_fast() -> None:
    items = [{"id": index, "price": index % 97} for index in range(100_000)]
    parameters = {"fields": [{"name": "double", "value": "{{ $json.price * 2 }}"}]}
    inputs = {"main": items}
    ctx = context("set", parameters, inputs)
    started = time.perf_counter()
    result = main(await BUILTINS["set"].execute(ctx, inputs))
    elapsed = time.perf_counter() - started
    assert result[-1] == {"id": 99_999, "price": 99_999 % 97, "double": 2 * (99_999 % 97)}
    assert elapsed < 1.0, f"set took {elapsed:.2f} s for 100,000 items"


# Sort


async def test_sort_by_one_field() -> None:
    items = [{"n": 3}, {"n": 1}, {"n": 2}]
    assert await run("sort", {"fields": [{"field": "n"}]}, items) == [{"n": 1}, {"n": 2}, {"n": 3}]
    descending = {"fields": [{"field": "n", "order": "desc"}]}
    assert await run("sort", descending, items) == [{"n": 3}, {"n": 2}, {"n": 1}]


async def test_sort_by_several_fields_and_nested_ones() -> None:
    items = [
        {"team": "b", "p": {"score": 1}, "id": 1},
        {"team": "a", "p": {"score": 1}, "id": 2},
        {"team": "b", "p": {"score": 5}, "id": 3},
        {"team": "a", "p": {"score": 9}, "id": 4},
    ]
    parameters = {"fields": [{"field": "team"}, {"field": "p.score", "order": "desc"}]}
    assert [item["id"] for item in await run("sort", parameters, items)] == [4, 2, 3, 1]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_sort_is_stable(order: str) -> None:
    items = [{"k": index % 3, "id": index} for index in range(30)]
    result = await run("sort", {"fields": [{"field": "k", "order": order}]}, items)
    for key in range(3):
        ids = [item["id"] for item in result if item["k"] == key]
        assert ids == sorted(ids)
    keys = [item["k"] for item in result]
    assert keys == sorted(keys, reverse=order == "desc")


async def test_sort_orders_mixed_types_deterministically() -> None:
    values: list[Any] = ["b", None, 3, True, [1], 1.5, "a", {"x": 1}, False, math.nan, -2]
    items = [{"v": value, "i": index} for index, value in enumerate(values)]
    items.append({"i": len(values)})  # the field is missing
    ascending = await run("sort", {"fields": [{"field": "v"}]}, items)
    # Numbers, text, booleans, lists, objects; null, NaN and missing last in input order.
    assert [item["i"] for item in ascending] == [10, 5, 2, 6, 0, 8, 3, 4, 7, 1, 9, 11]
    descending = await run("sort", {"fields": [{"field": "v", "order": "desc"}]}, items)
    assert [item["i"] for item in descending] == [7, 4, 3, 8, 0, 6, 2, 5, 10, 1, 9, 11]


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"fields": [{"field": "a", "order": "up"}]}, "fields[0].order"),
        ({"fields": [{"field": "a"}, {"field": ""}]}, "fields[1].field"),
        ({"fields": []}, "fields"),
        ({}, "fields"),
    ],
)
async def test_sort_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    error = await invalid("sort", parameters, [{"a": 1}])
    assert error.details["parameter"] == field


async def test_sort_of_many_items_holds_the_event_loop_a_few_ms_at_a_time() -> None:
    # One list.sort of 300,000 items holds the loop for about 0.1 to 0.3 s here.
    items = [{"n": (index * 7919) % 1000, "i": index} for index in range(300_000)]
    parameters = {"fields": [{"field": "n"}]}
    inputs = {"main": items}
    # The behaviour alone: `run_node`'s deep copy of the input would hold the loop itself.
    sort = BUILTINS["sort"].execute(context("sort", parameters, inputs), inputs)
    # The items set aside from the garbage collector, as a long-lived process's are (Loom's
    # processes tune it: LOOM_GC_THRESHOLD): a full collection over 300,000 young items
    # holds the loop for a tenth of a second, whatever code it interrupts.
    gc.collect()
    gc.freeze()
    try:
        outputs, held_s = await longest_hold_s(sort)
    finally:
        gc.unfreeze()
    assert held_s < 0.05, f"the loop was held for {held_s * 1000:.0f} ms"
    assert main(outputs) == sorted(items, key=lambda item: item["n"])  # stable


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_sort_in_runs_is_stable_in_both_directions(order: str) -> None:
    items = [{"n": index % 7, "i": index} for index in range(25_000)]  # three runs, ties
    result = await run("sort", {"fields": [{"field": "n", "order": order}]}, items)
    assert result == sorted(items, key=lambda item: item["n"], reverse=order == "desc")


# Limit


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"maxItems": 2}, [0, 1]),
        ({"maxItems": 2, "keep": "last"}, [3, 4]),
        ({"maxItems": 10}, [0, 1, 2, 3, 4]),
        ({"maxItems": 10, "keep": "last"}, [0, 1, 2, 3, 4]),
        ({"maxItems": "3"}, [0, 1, 2]),
        ({"maxItems": 1.0}, [0]),
        ({"maxItems": "{{ $json.pageSize }}"}, [0, 1, 2, 3]),
    ],
)
async def test_limit(parameters: dict[str, Any], expected: list[int]) -> None:
    items = [{"i": index, "pageSize": 4} for index in range(5)]
    assert [item["i"] for item in await run("limit", parameters, items)] == expected


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"maxItems": "ten"}, "maxItems"),
        ({"maxItems": 0}, "maxItems"),
        ({"maxItems": 2.5}, "maxItems"),
        ({"maxItems": True}, "maxItems"),
        ({"maxItems": "{{ $json.missing }}"}, "maxItems"),
        ({}, "maxItems"),
        ({"maxItems": 2, "keep": "middle"}, "keep"),
    ],
)
async def test_limit_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    error = await invalid("limit", parameters, [{"a": 1}])
    assert error.details["parameter"] == field
    assert f"'{field}'" in error.message


# Aggregate


async def test_aggregate_all_items() -> None:
    assert await run("aggregate", {}, ORDERS) == [{"data": ORDERS}]
    parameters = {"mode": "all_items", "destinationField": "batch.orders"}
    assert await run("aggregate", parameters, ORDERS) == [{"batch": {"orders": ORDERS}}]


async def test_aggregate_fields_into_lists() -> None:
    items = [
        {"email": "a@x", "customer": {"city": "Oslo"}},
        {"email": None, "customer": {"city": "Rome"}},
        {"customer": {}},
    ]
    parameters = {
        "mode": "fields",
        "fields": [{"field": "email", "renameTo": "emails"}, {"field": "customer.city"}],
    }
    assert await run("aggregate", parameters, items) == [
        {"emails": ["a@x"], "city": ["Oslo", "Rome"]}
    ]
    aligned = {**parameters, "keepMissing": True}
    assert await run("aggregate", aligned, items) == [
        {"emails": ["a@x", None, None], "city": ["Oslo", "Rome", None]}
    ]


async def test_aggregate_of_nothing_is_nothing() -> None:
    assert await run("aggregate", {}, []) == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"mode": "fields"}, "fields"),
        ({"mode": "fields", "fields": [{"field": ""}]}, "fields[0].field"),
        (
            {"mode": "fields", "fields": [{"field": "a.email"}, {"field": "b.email"}]},
            "fields[1].renameTo",
        ),
        ({"mode": "fields", "fields": [{"field": "a"}], "keepMissing": 1}, "keepMissing"),
        ({"mode": "everything"}, "mode"),
        ({"destinationField": ""}, "destinationField"),
    ],
)
async def test_aggregate_bad_parameters(parameters: dict[str, Any], field: str) -> None:
    error = await invalid("aggregate", parameters, ORDERS)
    assert error.details["parameter"] == field


# Split Out


async def test_split_out_objects_become_items() -> None:
    items = [{"id": 1, "lines": [{"sku": "A"}, {"sku": "B"}]}, {"id": 2, "lines": [{"sku": "C"}]}]
    assert await run("split_out", {"field": "lines"}, items) == [
        {"sku": "A"},
        {"sku": "B"},
        {"sku": "C"},
    ]
    kept = await run("split_out", {"field": "lines", "keepOtherFields": True}, items)
    assert kept == [
        {"id": 1, "lines": {"sku": "A"}},
        {"id": 1, "lines": {"sku": "B"}},
        {"id": 2, "lines": {"sku": "C"}},
    ]


async def test_split_out_values_go_under_the_field_name() -> None:
    items = [{"id": 1, "order": {"tags": ["x", "y"]}}]
    assert await run("split_out", {"field": "order.tags"}, items) == [
        {"order": {"tags": "x"}},
        {"order": {"tags": "y"}},
    ]
    kept = await run("split_out", {"field": "order.tags", "keepOtherFields": True}, items)
    assert kept == [{"id": 1, "order": {"tags": "x"}}, {"id": 1, "order": {"tags": "y"}}]


async def test_split_out_like_n8n_for_objects_single_values_and_gaps() -> None:
    items = [
        {"v": {"a": 1, "b": 2}},  # an object splits into its values
        {"v": "single"},  # a single value gives one item
        {"v": []},
        {"v": None},
        {"other": True},  # no field: no items
    ]
    assert await run("split_out", {"field": "v"}, items) == [{"v": 1}, {"v": 2}, {"v": "single"}]


async def test_split_out_field_found_nowhere_is_an_error() -> None:
    with pytest.raises(NodeError) as caught:
        await run_node("split_out", {"field": "linez"}, [{"lines": [1]}, {"id": 2}])
    assert caught.value.error_type == "FIELD_NOT_FOUND"
    assert "'linez'" in caught.value.message


async def test_split_out_bad_parameters() -> None:
    assert (await invalid("split_out", {}, [{"a": [1]}])).details["parameter"] == "field"
    parameters = {"field": "a", "keepOtherFields": "yes"}
    assert (await invalid("split_out", parameters, [{"a": [1]}])).details[
        "parameter"
    ] == "keepOtherFields"
