"""What evaluating expressions may cost, and the meter that counts it.

One `Budget` covers one rendering: all the expressions of one node's parameters for one item
(`CompiledParameters.render` starts it afresh). It counts

- **steps**: every operation of an expression, and the work an operation does on data:
  every element a size check, a comparison, `in`, `sorted`, `unique`, `join` or `json()`
  visits; elements copied or compared by Python's C code count a step per
  `ELEMENTS_PER_STEP`, characters a step per `CHARS_PER_STEP`, each list or object looked
  into `CONTAINER_STEPS` more. A step is roughly the time Python takes to look at one element
  (0.05 to 0.15 µs on a busy 2-core machine, calibrated per operation), so the default budget
  holds the event loop for 5 to 15 ms at most;
- **value size**: every value an expression builds is at most `max_value_size`, counted
  recursively (a string counts its characters, any other scalar 1, a list or object 1 plus
  its elements and keys) with a shared reference counted each time it appears. Sizes are
  checked *before* a value is built: `[[0]*100000]*100000` is refused as 10^10 elements
  without building anything. A template's whole text counts as one value;
- **number size**: integers up to `MAX_INT_BITS` bits, exponents up to
  `MAX_POWER_EXPONENT`, rounding to at most `MAX_ROUND_DIGITS` digits;
- **regex time**: the total time regular expressions may take in one rendering; compiling
  each distinct pattern of a rendering costs steps besides (`patterns`), and a pattern too
  costly to compile at all is refused (**regex size**).

Every `CHECK_EVERY_STEPS` steps the budget also checks the node's deadline (its timeout or
the execution's, whichever is first), so that raised limits still cannot outlast a timeout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from engine.expressions.errors import DeadlineReached, LimitExceeded

ELEMENTS_PER_STEP = 4
CHARS_PER_STEP = 64
CHECK_EVERY_STEPS = 10_000
MAX_INT_BITS = 4_096
MAX_POWER_EXPONENT = 1_000
MAX_ROUND_DIGITS = 400

# The names a limit goes by in errors (`details.limit`) and in the docs.
STEPS = "steps"
VALUE_SIZE = "value size"
NUMBER_SIZE = "number size"
REGEX_TIME = "regex time"
REGEX_SIZE = "regex size"

# Where each limit is set, for messages that tell an operator what to change.
SETTING = {
    STEPS: "LOOM_EXPRESSION_MAX_STEPS",
    VALUE_SIZE: "LOOM_EXPRESSION_MAX_VALUE_SIZE",
    REGEX_TIME: "LOOM_REGEX_TIMEOUT_S",
}

_CONTAINERS = (list, dict)
# What evaluating an expression's own tree costs, charged as a rendering starts: each node
# of the tree (an operation, a name, a constant), and each expression and text template
# besides (calling it, turning its value into text).
TREE_NODE_STEPS = 2
EXPRESSION_STEPS = 16
TEMPLATE_STEPS = 16
# Measuring a container costs its elements and this many steps more.
CONTAINER_STEPS = 4
# Containers this large have their size remembered for the rest of the rendering, so that a
# shared reference is not measured again each time it appears.
REMEMBER_SIZE_FROM = 64


@dataclass(frozen=True, slots=True)
class ExpressionLimits:
    """The budget of one rendering; set per deployment (`LOOM_EXPRESSION_*`)."""

    max_steps: int = 100_000
    max_value_size: int = 1_000_000
    # Total time of regular expressions per rendering (expressions' `matches`), and in all
    # per item for the regex conditions of IF, Filter and Switch.
    regex_timeout_s: float = 0.02


DEFAULT_LIMITS = ExpressionLimits()


class Budget:
    """The meter of one rendering. Evaluation charges it; it raises `LimitExceeded` when a
    limit is passed and `DeadlineReached` when the deadline (monotonic clock) has."""

    __slots__ = (
        "_first_check",
        "_memo",
        "check_at",
        "deadline",
        "limits",
        "regex_left_s",
        "used",
    )

    def __init__(
        self, limits: ExpressionLimits = DEFAULT_LIMITS, deadline: float | None = None
    ) -> None:
        self.limits = limits
        self.deadline = deadline
        self._first_check = (
            CHECK_EVERY_STEPS if limits.max_steps > CHECK_EVERY_STEPS else limits.max_steps
        )
        self.used = 0
        self.check_at = self._first_check
        self.regex_left_s = limits.regex_timeout_s
        # What this rendering remembers: by id, the measures (size, containers) of large
        # containers met, each with the container (kept alive, so that its id cannot be
        # reused while remembered); by their text, the regular expressions it has been
        # charged for compiling. One dict, so that starting a rendering resets one field.
        self._memo: dict[int | str, tuple[int, int, Any]] | None = None

    def start(self, steps: int = 0) -> None:
        """Begin a rendering whose expressions' own operations cost `steps`: the rest of
        the budget is available to the work they do on data."""
        self.used = steps
        self.check_at = self._first_check
        self.regex_left_s = self.limits.regex_timeout_s
        self._memo = None
        if steps > self._first_check:
            self.boundary()

    def charge(self, steps: int) -> None:
        self.used += steps
        if self.used > self.check_at:
            self.boundary()

    def boundary(self) -> None:
        """Every `CHECK_EVERY_STEPS` steps: refuse past the limit, stop past the deadline."""
        if self.used > self.limits.max_steps:
            raise exceeded(
                STEPS,
                f"more than {self.limits.max_steps:,} steps (operations and elements "
                "visited in one rendering of the node's parameters)",
            )
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineReached
        self.check_at = min(self.used + CHECK_EVERY_STEPS, self.limits.max_steps)

    def charge_elements(self, count: int) -> None:
        """Elements copied or compared by C code (list repetition, slices, `==` on scalars)."""
        self.charge(count // ELEMENTS_PER_STEP)

    def charge_chars(self, count: int) -> None:
        """Characters scanned or written by C code (string methods, repetition, joining)."""
        self.charge(count // CHARS_PER_STEP)

    def steps_left(self) -> int:
        return max(0, self.limits.max_steps - self.used)

    def check_size(self, size: int, what: str) -> None:
        """Refuse building `what` of logical size `size` when it is past the limit."""
        if size > self.limits.max_value_size:
            raise exceeded(
                VALUE_SIZE,
                f"{what} would have a size of {_count(size)}, more than "
                f"{self.limits.max_value_size:,} (characters and elements, counted recursively)",
            )

    def measure(self, value: Any, allowed: int | None = None) -> tuple[int, int]:
        """The logical size of `value` and how many lists and objects it holds (itself
        included), charging a step per element looked at.

        Stops as soon as the size passes `allowed` (the value size limit by default),
        returning a size past it: the caller refuses the value, and no measurement costs
        more than the limit it checks. A large container met again (a shared reference) is
        not looked into again: its measure is remembered for the rest of the rendering.
        """
        kind = type(value)
        if kind is str:
            return len(value), 0
        if kind is not list and kind is not dict:
            return 1, 0
        allowed = self.limits.max_value_size if allowed is None else allowed
        if self._memo is None:
            self._memo = {}
        walk = _Walk(self, self._memo, allowed)
        try:
            return walk.measure(value), walk.containers
        except _TooLarge:
            return allowed + 1, walk.containers
        finally:
            self.charge(walk.visited - walk.charged)

    def size(self, value: Any, allowed: int | None = None) -> int:
        """The logical size of `value` (see `measure`)."""
        return self.measure(value, allowed)[0]

    def work(self, value: Any, allowed: int | None = None) -> int:
        """Steps one pass over `value` takes (encoding it, comparing it, keying it): its
        size, and more for each list or object (Python's code pays for each container)."""
        allowed = self.steps_left() if allowed is None else allowed
        size, containers = self.measure(value, allowed)
        return size + CONTAINER_STEPS * containers

    def check_value(self, value: Any, what: str) -> None:
        """Refuse a value about to be built from `value`'s parts when it is too large."""
        self.check_size(self.size(value), what)

    def check_repeat(self, sequence: Any, count: int) -> tuple[int, int]:
        """`sequence * count`: refuse before building what would be too large; the measure
        (size, containers) of what may then be built."""
        if count <= 0:
            return 1, 1
        limit = self.limits.max_value_size
        size, containers = self.measure(sequence, limit // count + 1)
        what = f"repeating a value {_count(count)} times"
        if isinstance(sequence, str):
            self.check_size(size * count, what)
            self.charge_chars(len(sequence) * count)
            return size * count, 0
        # One list holding `count` times the elements (its own count once).
        repeated = 1 + count * (size - 1), 1 + count * (containers - 1)
        self.check_size(repeated[0], what)
        self.charge_elements(len(sequence) * count)
        return repeated

    def remember(self, container: Any, measured: tuple[int, int]) -> None:
        """The measure of a container just built, known without looking into it: measuring
        it later (to compare it, or build from it) costs nothing."""
        if self._memo is None:
            self._memo = {}
        self._memo[id(container)] = (*measured, container)

    def comparison(self, left: Any, right: Any) -> None:
        """Charge what comparing (`==`, `<`) two values costs, before it is done.

        Scalars compare in one step (already charged as the operation); strings by their
        characters; a list or object with a scalar at once (they differ by type); two
        containers element by element, so by the smaller one's work.
        """
        left_kind, right_kind = type(left), type(right)
        if left_kind is str and right_kind is str:
            self.charge_chars(min(len(left), len(right)))
        elif left_kind in _CONTAINERS and right_kind in _CONTAINERS:
            work = self.work(left, self._elements_left())
            work = min(work, self.work(right, work))
            self.charge_elements(work)

    def membership(self, container: list[Any], element: Any) -> None:
        """Charge `element in container` for a list: one comparison per element, each as
        costly as the element (a string or container compared with one of its kind)."""
        if type(element) in _CONTAINERS or (type(element) is str and len(element) > 64):
            self.charge_elements(self.work(container, self._elements_left()))
        else:
            self.charge_elements(len(container))

    def _elements_left(self) -> int:
        """How many elements C code may still compare: more pass the steps limit."""
        return (self.steps_left() + 1) * ELEMENTS_PER_STEP

    def regex_timeout_s(self) -> float:
        """How long the next regular expression may take: what is left of the budget."""
        if self.regex_left_s <= 0:
            raise regex_exceeded(self.limits.regex_timeout_s)
        return self.regex_left_s

    def spent_on_regex(self, elapsed_s: float) -> None:
        self.regex_left_s -= elapsed_s

    def compiling(self, source: str, steps: int) -> None:
        """Charge compiling the pattern `source`: once per rendering, whether or not it was
        compiled before (so that what passes the limits does not depend on a cache)."""
        if self._memo is None:
            self._memo = {}
        if source not in self._memo:
            self._memo[source] = (0, 0, None)
            self.charge(steps)


class _TooLarge(Exception):
    """A measurement passed what it was allowed to count."""


class _Walk:
    """One measurement: counts elements and containers recursively, remembering large
    containers' measures."""

    __slots__ = ("allowed", "budget", "charged", "containers", "sizes", "visited", "visits_left")

    def __init__(
        self, budget: Budget, sizes: dict[int | str, tuple[int, int, Any]], allowed: int
    ) -> None:
        self.budget = budget
        self.sizes = sizes
        self.allowed = allowed
        self.visits_left = budget.steps_left()
        self.visited = 0
        # Visits charged to the budget so far: a long measurement charges as it goes, so
        # that the budget's boundaries (and the deadline) are checked along the way.
        self.charged = 0
        self.containers = 0

    def measure(self, container: Any) -> int:
        known = self.sizes.get(id(container))
        if known is not None:
            self.containers += known[1]
            return known[0]
        count = len(container)
        total = 1 + count
        if total > self.allowed:
            raise _TooLarge
        containers_before = self.containers
        self.containers += 1
        # Looking into a container costs about as much as looking at a few elements.
        self.visited += count + CONTAINER_STEPS
        if self.visited > self.visits_left:
            raise _TooLarge
        if self.visited - self.charged >= CHECK_EVERY_STEPS:
            uncharged, self.charged = self.visited - self.charged, self.visited
            self.budget.charge(uncharged)
        if type(container) is dict:
            total += sum(map(len, container))  # keys are strings
            if total > self.allowed:
                raise _TooLarge
            elements: Any = container.values()
        else:
            elements = container
        # Python's C code sorts out a long list of scalars at once.
        nested = True
        if count >= 16:
            kinds = set(map(type, elements))
            nested = str in kinds or list in kinds or dict in kinds
        if nested:
            total -= count  # each element counted below by its own size
            for element in elements:
                kind = type(element)
                if kind is str:
                    total += len(element)
                elif kind is list or kind is dict:
                    total += self.measure(element)
                else:
                    total += 1
            if total > self.allowed:
                raise _TooLarge
        if count >= REMEMBER_SIZE_FROM:
            self.sizes[id(container)] = (total, self.containers - containers_before, container)
        return total


def exceeded(limit: str, detail: str) -> LimitExceeded:
    """The error for `limit`, saying what was refused and which setting raises the limit."""
    setting = SETTING.get(limit)
    where = f"; the limit is set by {setting}" if setting else ""
    return LimitExceeded(limit, f"expression limit '{limit}' exceeded: {detail}{where}")


def regex_exceeded(timeout_s: float) -> LimitExceeded:
    return exceeded(
        REGEX_TIME,
        f"regular expressions took longer than {timeout_s:g} s in all; nested repeats such "
        "as (a+)+ backtrack catastrophically",
    )


def _count(number: int) -> str:
    """A count for a message: digits up to a billion, then a power of ten."""
    if number < 10**9:
        return f"{number:,}"
    return f"about 10^{len(str(number)) - 1}"
