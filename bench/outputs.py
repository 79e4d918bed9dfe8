"""What chunked outputs cost to store, and what a capped page costs to read.

    .venv/bin/python bench/outputs.py [--runs 21]

Storing: a node output is encoded in chunks under the size limit (`serialize_outputs`) and
packed, each chunk compressed, after an index (`payloads.pack`); the floor, measured in the
same run, is what outputs cost before they were chunked: one checked encoding of the whole
output (`json_depth.encode`) and one zstd frame of it.

Reading: a page with `maxBytes: 1000` at the start and in the middle of the stored output
(`storage.output_reads`, on the bytes in memory: no database), against decoding the whole
output, which is what every read did before; with the peak of memory each allocates
(tracemalloc).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.engine_workloads import make_items
from engine.json_depth import ITEM_DEPTH, encode
from engine.outputs import serialize_outputs
from storage import payloads
from storage.output_reads import HEAD_BYTES, _ChunkedOutput, _Stored
from storage.payloads import ChunkIndex

PortItems = dict[str, list[dict[str, Any]]]


def shapes() -> dict[str, PortItems]:
    return {
        "1 small item": {"main": [{"id": 1, "name": "Ada", "price": 2.5, "qty": 3}]},
        "10 small items": {"main": [{"id": n, "name": f"row {n}"} for n in range(10)]},
        "10,000 order items (10.9 MB)": {"main": make_items(10_000)},
        "100,000 small items (3.3 MB)": {"main": [{"n": n, "tag": "ab"} for n in range(100_000)]},
        "200 items of 1,000,000 characters (200 MB)": {
            "main": [{"s": "x" * 1_000_000} for _ in range(200)]
        },
    }


def median_s(work: Callable[[], object], runs: int) -> float:
    repeat = 1
    start = time.perf_counter()
    work()
    if time.perf_counter() - start < 0.001:
        repeat = 200
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            work()
        times.append((time.perf_counter() - start) / repeat)
    return statistics.median(times)


def peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def reader(data: bytes) -> _ChunkedOutput:
    async def fetch(start: int, length: int) -> bytes:
        return data[start : start + length]

    stored = _Stored(payloads.CHUNKED, len(data), data[:HEAD_BYTES], fetch)
    return _ChunkedOutput(stored, ChunkIndex.parse(data[: ChunkIndex.length(data)]))


def synchronously(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that never suspends (`fetch` above answers at once),
    without an event loop's cost per call, which would be most of a small page's."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


def show(value_s: float) -> str:
    return f"{value_s * 1e6:,.1f} us" if value_s < 0.001 else f"{value_s * 1e3:,.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    print(f"outputs: medians of {args.runs} runs\n")
    print("| output | encode (chunks) | floor: encode | pack | floor: one frame |")
    print("| --- | --- | --- | --- | --- |")
    stored: dict[str, tuple[PortItems, bytes]] = {}
    for name, outputs in shapes().items():
        encoded = serialize_outputs(outputs)
        data = payloads.pack(encoded)
        stored[name] = (outputs, data)
        whole = encode(outputs, ITEM_DEPTH + 2)
        figures = (
            median_s(lambda o=outputs: serialize_outputs(o), args.runs),  # type: ignore[misc]
            median_s(lambda o=outputs: encode(o, ITEM_DEPTH + 2), args.runs),  # type: ignore[misc]
            median_s(lambda e=encoded: payloads.pack(e), args.runs),  # type: ignore[misc]
            median_s(lambda w=whole: payloads.compress(w), args.runs),  # type: ignore[misc]
        )
        print(f"| {name} | " + " | ".join(show(f) for f in figures) + " |")
    print("\n| output | page at 0 | page in the middle | decode all | peak: page | peak: all |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (outputs, data) in stored.items():
        output = reader(data)
        middle = len(outputs["main"]) // 2

        def page(offset: int, output: _ChunkedOutput = output) -> object:
            return synchronously(output.page("main", offset, 100, 1000))

        def decode_all(data: bytes = data) -> object:
            return payloads.decode_chunked(data)

        figures = (
            median_s(lambda: page(0), args.runs),
            median_s(lambda m=middle: page(m), args.runs),  # type: ignore[misc]
            median_s(decode_all, min(args.runs, 5)),
        )
        peaks = (peak_bytes(lambda m=middle: page(m)), peak_bytes(decode_all))  # type: ignore[misc]
        print(
            f"| {name} | "
            + " | ".join(show(f) for f in figures)
            + f" | {peaks[0] / 1e6:,.2f} MB | {peaks[1] / 1e6:,.1f} MB |"
        )


if __name__ == "__main__":
    main()
