"""What the JSON nesting check costs on a 1 MB item, beside the encoding every output pays.

    .venv/bin/python bench/json_depth.py [--runs 21]

Each node output is checked (`engine.json_depth.nests_deeper`) and then encoded with orjson
for storage; the encoding is the floor the check is compared with, measured in the same run.
Items of about 1 MB, shaped as node outputs usually are: records (objects with a nested list
and object), a list of numbers, a list of short strings, and small nested structures repeated.
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

from engine.json_depth import ITEM_DEPTH, nests_deeper


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
    }


def median_ms(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    print(f"{'item':<8} {'size':>8} {'check':>9} {'orjson.dumps':>13} {'ratio':>6}")
    for name, item in items().items():
        size_mb = len(orjson.dumps(item)) / 1e6
        assert not nests_deeper(item, ITEM_DEPTH)
        check = median_ms(lambda item=item: nests_deeper(item, ITEM_DEPTH), runs)
        encode = median_ms(lambda item=item: orjson.dumps(item), runs)
        print(
            f"{name:<8} {size_mb:>6.2f}MB {check:>7.2f}ms {encode:>11.2f}ms {check / encode:>5.1f}x"
        )


if __name__ == "__main__":
    main()
