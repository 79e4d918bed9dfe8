"""What the JSON nesting checks cost on a 1 MB item, beside the encoding every output pays.

    .venv/bin/python bench/json_depth.py [--runs 21]

A node output is encoded with orjson for storage: that encoding is the floor, measured in
the same run. `encode` is the encoding that checks the limit itself (how node outputs are
checked); `nests_deeper` is the walk (how values coming in are checked). Items of about
1 MB, shaped as node outputs usually are: records (objects with a nested list and object), a
list of numbers, a list of short strings, and small nested structures repeated; and a small
item of five fields, the common case.
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

from engine.json_depth import ITEM_DEPTH, encode, nests_deeper


def items() -> dict[str, dict[str, Any]]:
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
    return {
        "records": {"records": records},
        "numbers": {"values": list(range(150_000))},
        "strings": {"values": [f"value {index:012d}" for index in range(45_000)]},
        "nested": {"rows": [[{"x": [1, 2, {"y": [index]}]}] for index in range(12_000)]},
        "small": {"id": 1, "name": "Ada", "price": 2.5, "tags": ["a"], "address": {"x": 1}},
    }


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
    print(f"{'item':<8} {'size':>9} {'orjson.dumps':>13} {'encode':>14} {'nests_deeper':>14}")
    for name, item in items().items():
        outputs = {"main": [item]}
        size = len(orjson.dumps(outputs))
        repeat = max(1, 100_000 // size)
        assert encode(outputs, ITEM_DEPTH + 2) == orjson.dumps(outputs)
        assert not nests_deeper(outputs, ITEM_DEPTH + 2)
        floor = median_ms(lambda o=outputs: orjson.dumps(o), runs, repeat)
        checked = median_ms(lambda o=outputs: encode(o, ITEM_DEPTH + 2), runs, repeat)
        walk = median_ms(lambda o=outputs: nests_deeper(o, ITEM_DEPTH + 2), runs, repeat)
        unit, scale = ("ms", 1.0) if size > 10_000 else ("us", 1000.0)
        print(
            f"{name:<8} {size / 1e6:>7.2f}MB {floor * scale:>11.3f}{unit}"
            f" {checked * scale:>8.3f}{unit} {checked / floor:>4.1f}x"
            f" {walk * scale:>8.3f}{unit} {walk / floor:>4.1f}x"
        )


if __name__ == "__main__":
    main()
