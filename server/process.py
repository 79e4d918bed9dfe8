"""Process-wide tuning shared by every Loom process that runs workflows."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> None:
    """Run the cyclic garbage collector less often.

    Workflow data is millions of small dicts and lists that are never cyclic. With Python's
    default (a young collection every 700 new containers), parsing and transforming them
    spends most of its time in the collector: parsing a 108 MB input took 1.8 s instead of
    0.55 s, and the 100,000-item benchmark ran 7.4 s instead of 5.1 s (docs/benchmarks.md).
    Reference counting still frees everything acyclic at once; only cycles wait longer.
    `0` keeps Python's default.
    """
    if gen0_threshold <= 0:
        return
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
