"""A least-recently-used cache bounded by count and by the total weight of its entries.

Compiled expressions and patterns are pure functions of their text, so they are cached by it;
what one costs in memory varies a thousandfold (`$json.a` and 10,000 characters of operators,
`\\d+` and a repeat unrolled 10,000 times), so a bound on their count alone would not bound
the memory they hold. Refusals are cached too: a text that does not compile is refused again
without the work.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class WeightedCache(Generic[K, V]):
    """At most `max_entries` entries, and `max_weight` in all (as `weigh` weighs them)."""

    def __init__(self, max_entries: int, max_weight: int, weigh: Callable[[K, V], int]) -> None:
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_weight = max_weight
        self._weigh = weigh
        self._weight = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(key, value)
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._weight -= previous[1]
        self._entries[key] = (value, weight)
        self._weight += weight
        while len(self._entries) > self._max_entries or self._weight > self._max_weight:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._weight -= evicted

    def __len__(self) -> int:
        return len(self._entries)
