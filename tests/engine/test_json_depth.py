"""The JSON nesting limit's check and parser: exact at the limit, never recursing."""

from __future__ import annotations

import json
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from engine.json_depth import (
    MAX_JSON_DEPTH,
    JsonTooDeep,
    check_depth,
    encode,
    loads,
    nests_deeper,
)
from engine.nodes.base import NodeError
from engine.outputs import serialize_outputs
from storage.payloads import decode_chunked, pack
from tests.factories import nested


def test_the_limit_is_64() -> None:
    assert MAX_JSON_DEPTH == 64


@pytest.mark.parametrize(
    ("value", "depth"),
    [
        (1, 0),
        ("[[[", 0),
        (None, 0),
        ([], 1),
        ({}, 1),
        ({"a": [1]}, 2),
        ([1, "x", [2, [3]], {"a": {}}], 3),
        ({"a": 1, "b": [{"c": [[]]}], "d": "e"}, 5),
        (OrderedDict(a=[OrderedDict()]), 3),
        ([{"a": 1}, [2], 3], 2),
        (nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH),
    ],
)
def test_depth_is_counted_in_arrays_and_objects(value: Any, depth: int) -> None:
    assert not nests_deeper(value, depth)
    assert nests_deeper(value, depth - 1) or depth == 0


def test_exactly_the_limit_passes_and_one_more_level_is_refused() -> None:
    check_depth(nested(MAX_JSON_DEPTH))
    with pytest.raises(JsonTooDeep, match="nested more than 64 levels deep"):
        check_depth(nested(MAX_JSON_DEPTH + 1))


def test_the_deepest_branch_counts_wherever_it_is() -> None:
    wide = [{"id": i, "tags": ["a"]} for i in range(1000)]
    wide[517]["tags"] = nested(MAX_JSON_DEPTH - 2)
    assert not nests_deeper(wide)
    wide[517]["tags"] = [nested(MAX_JSON_DEPTH - 2)]
    assert nests_deeper(wide)


def test_huge_depth_does_not_recurse() -> None:
    deep: Any = []
    for _ in range(200_000):
        deep = [deep]
    assert nests_deeper(deep)
    assert not nests_deeper(deep, 300_000)


def test_loads_accepts_the_limit_and_refuses_one_more_level() -> None:
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert nests_deeper(loads(at_limit), MAX_JSON_DEPTH - 1)
    with pytest.raises(JsonTooDeep):
        loads("[" + at_limit + "]")


@pytest.mark.parametrize("depth", [100, 1024, 1025, 100_000])
def test_loads_refuses_any_depth_past_the_limit_as_too_deep(depth: int) -> None:
    # Past orjson's own limit (1,024) too: its error names the depth only in its wording.
    with pytest.raises(JsonTooDeep):
        loads(b"[" * depth + b"]" * depth)
    with pytest.raises(JsonTooDeep):
        loads(b'{"a":' * depth + b"1" + b"}" * depth)


@pytest.mark.parametrize("text", ["", "[1,", "{'a': 1}", "NaN", '"\\ud800"'])
def test_loads_refuses_what_is_not_json_as_a_value_error(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        loads(text)
    assert not isinstance(raised.value, JsonTooDeep)


def test_loads_reads_what_json_reads() -> None:
    value = {"a": [1, 2.5, None, True, "x\u00e9"], "b": {"c": []}}
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value).encode()) == value


def test_node_outputs_hold_items_whose_fields_nest_at_most_64_levels() -> None:
    at_limit = {"main": [{"a": 1}], "other": [{"ok": 1}, {"deep": nested(MAX_JSON_DEPTH)}]}
    encoded = serialize_outputs(at_limit)
    assert decode_chunked(pack(encoded)) == at_limit
    assert encoded.raw_bytes == len(orjson.dumps(at_limit))
    over = {"main": [{"a": 1}], "other": [{"ok": 1}, {"deep": nested(MAX_JSON_DEPTH + 1)}]}
    with pytest.raises(NodeError) as raised:
        serialize_outputs(over)
    assert raised.value.error_type == "NODE_OUTPUT_TOO_DEEP"
    assert raised.value.details == {"port": "other", "item": 1, "maxDepth": MAX_JSON_DEPTH}
    assert raised.value.message == (
        "output 'other' item 1 holds JSON nested more than 64 levels deep (the limit)"
    )
    # Past orjson's own limit too, and with a value that is not JSON beside it.
    for deep in (nested(300), nested(100_000), [nested(MAX_JSON_DEPTH + 1), object()]):
        with pytest.raises(NodeError) as raised:
            serialize_outputs({"main": [{"deep": deep}]})
        assert raised.value.error_type == "NODE_OUTPUT_TOO_DEEP"
    with pytest.raises(NodeError) as raised:
        serialize_outputs({"main": [{"when": object()}]})
    assert raised.value.error_type == "NODE_OUTPUT_INVALID"


@pytest.mark.parametrize("limit", [0, 1, 2, 30, MAX_JSON_DEPTH, 67, 200, 253, 254])
def test_encode_is_orjson_refusing_exactly_past_the_limit(limit: int) -> None:
    value = nested(limit, leaf='a]]}\\"[\u00e9')
    for option in (0, orjson.OPT_SORT_KEYS):
        assert encode(value, limit, option) == orjson.dumps(value, option=option)
    with pytest.raises(JsonTooDeep):
        encode([value], limit)


def test_encode_checks_every_branch() -> None:
    wide = {"a": [1, {"b": "x"}], "c": [[[]]], "d": nested(4)}
    assert encode(wide, 5) == orjson.dumps(wide)
    wide["c"] = [[[[[[]]]]]]
    with pytest.raises(JsonTooDeep):
        encode(wide, 5)


def test_encode_past_what_orjson_encodes_walks_instead() -> None:
    assert encode(nested(10), 1000) == orjson.dumps(nested(10))
    with pytest.raises(JsonTooDeep):
        encode(nested(1001), 1000)


def test_encode_passes_on_what_orjson_refuses_for_other_reasons() -> None:
    with pytest.raises(orjson.JSONEncodeError) as raised:
        encode({"big": 2**70})
    assert not isinstance(raised.value, JsonTooDeep)


def test_encode_can_run_in_threads_at_once() -> None:
    values = [{"thread": index, "deep": nested(MAX_JSON_DEPTH - 1)} for index in range(8)]

    def work(value: Any) -> bool:
        return all(encode(value) == orjson.dumps(value) for _ in range(200))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, values))
