"""What the JSON nesting checks cost on a 1 MB item, beside the encoding every output pays.

    .venv/bin/python bench/json_depth.py [--runs 21]

A node output is encoded with orjson for storage: that encoding is the floor, measured in
the same run. `encode` is the encoding that checks the limit itself, how node outputs (and,
through `nests_deeper`, values coming in) are checked; the walk, one level at a time in
Python, is what it replaced (and what values orjson does not encode still get). Items of
about 1 MB, shaped as node outputs usually are: records (objects with a nested list and
object), a list of numbers, a list of short strings, small nested structures repeated; a
small item of five fields, the common case; and 10,000 order items of about 1 KB, the items
of `bench/engine.py`'s large-data run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.engine_workloads import make_items
from engine.json_depth import ITEM_DEPTH, _walk_nests_deeper, encode


def outputs() -> dict[str, dict[str, list[dict[str, Any]]]]:
    records = [
        {
            "id": index,
            "name": f"customer {index}",
            "email": f"c{index}@example.com",
            "active": index % 2 == 0,
            "tags": ["a", "b"],
            "address": {"street": "Main St 1", "city": "Berlin"},
        }
        for index in range(7000)
    ]
    items = {
        "records": {"records": records},
        "numbers": {"values": list(range(150_000))},
        "strings": {"values": [f"value {index:012d}" for index in range(45_000)]},
        "nested": {"rows": [[{"x": [1, 2, {"y": [index]}]}] for index in range(12_000)]},
        "small": {"id": 1, "name": "Ada", "price": 2.5, "tags": ["a"], "address": {"x": 1}},
    }
    found = {name: {"main": [item]} for name, item in items.items()}
    found["orders"] = {"main": make_items(10_000)}
    return found


def median_ms(work: Callable[[], object], runs: int, repeat: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            work()
        times.append((time.perf_counter() - start) / repeat)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    print(f"{'output':<8} {'size':>9} {'orjson.dumps':>13} {'encode':>16} {'walk':>16}")
    for name, output in outputs().items():
        size = len(orjson.dumps(output))
        repeat = max(1, 100_000 // size)
        assert encode(output, ITEM_DEPTH + 2) == orjson.dumps(output)
        assert not _walk_nests_deeper(output, ITEM_DEPTH + 2)
        floor = median_ms(lambda o=output: orjson.dumps(o), runs, repeat)
        checked = median_ms(lambda o=output: encode(o, ITEM_DEPTH + 2), runs, repeat)
        walk = median_ms(lambda o=output: _walk_nests_deeper(o, ITEM_DEPTH + 2), runs, repeat)
        unit, scale = ("ms", 1.0) if size > 10_000 else ("us", 1000.0)
        print(
            f"{name:<8} {size / 1e6:>7.2f}MB {floor * scale:>11.3f}{unit}"
            f" {checked * scale:>9.3f}{unit} {checked / floor:>4.1f}x"
            f" {walk * scale:>9.3f}{unit} {walk / floor:>4.1f}x"
        )


if __name__ == "__main__":
    main()
