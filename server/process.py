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


def freeze_startup_objects() -> None:
    """Take what the start-up allocated (modules, classes, the app: about 140,000 tracked
    objects, living as long as the process) out of the collector's sight.

    With the threshold raised before the imports (`tune_gc`), few collections run during the
    start, so most of these objects are still in the younger generations afterwards: the next
    collection of the middle one would walk some 90,000 of them (about 80 ms, every request
    waiting; tests/server/test_serve_hostile.py's `/healthz` p99). Frozen, they are never
    walked again; the hundred or so cyclic leftovers of the start are kept for good."""
    gc.freeze()
