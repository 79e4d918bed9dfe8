"""Regular expressions written by workflow authors: measured before they are compiled,
compiled once.

`matches()` in expressions and the `regex` condition of IF, Filter and Switch use the `regex`
package, whose `timeout` bounds matching but not compiling. Compiling cannot be interrupted:
it runs the package's parser (Python, 5 to 20 µs a character of the pattern) and then its C
code, whose cost grows with the pattern's counted repeats *unrolled* by their minimum count
(up to 0.6 µs and 150 bytes an item). `(?:(?:a{1000}){1000}){1000}` is 27 characters and a
billion items (gigabytes, minutes), `a{4294967294}` fails with MemoryError after seconds, a
1 MB alternation takes 15 s. So a pattern is refused past

- `MAX_PATTERN_CHARS` characters;
- `MAX_PATTERN_DEPTH` groups within one another (parsing and compiling recurse);
- `MAX_PATTERN_SIZE` items once its counted repeats (`{n}`, `{n,m}`) are unrolled. Only a
  pattern with a `{` can have one; its size is measured on the package's own parse of it,
  the exact account of what the C code would be given (so `(?x)a{1 0 0 0 0 0}`, a count
  spaced out in verbose mode, is read as the C code would read it).

Within these, compiling takes at most about 20 ms and 1.5 MB. Compiled patterns are kept in an
LRU bounded by count and by their sizes (`cache`); refusals and errors too, so that a bad
pattern tested on every item is looked at once. The package's own cache, bounded by count
only, is not used.

The parse is the package's internal one (`regex._regex_core`, the same for a decade);
`tests/engine/test_regex_patterns.py` fails if it changes shape. The package (1.4 MB, 12 ms)
is imported with the first pattern compiled, not with every process start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.expressions.budget import REGEX_SIZE, exceeded
from engine.expressions.cache import WeightedCache
from engine.expressions.errors import EvalError, LimitExceeded

if TYPE_CHECKING:
    import regex

MAX_PATTERN_CHARS = 1_000
MAX_PATTERN_DEPTH = 32
MAX_PATTERN_SIZE = 10_000
# What compiling a pattern costs in budget steps (about 0.1 µs each): per character of its
# text (the parser), and per item of its unrolled form (the C code).
PATTERN_CHAR_STEPS = 16
PATTERN_ITEM_STEPS = 3
# The cache: at most this many patterns, and this many unrolled items in all (about 30 MB).
CACHE_PATTERNS = 512
CACHE_ITEMS = 200_000

# What can open or close a group: escapes and character sets hold none.
_PARENTHESES = re.compile(r"\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|[()]", re.DOTALL)


class InvalidPattern(EvalError):
    """The text is not a regular expression; `reason` gives the `regex` package's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid regular expression: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled pattern, and its size: items once its counted repeats are unrolled."""

    compiled: regex.Pattern[str]
    items: int

    @property
    def steps(self) -> int:
        """What compiling it costs in budget steps."""
        return PATTERN_CHAR_STEPS * len(self.compiled.pattern) + PATTERN_ITEM_STEPS * self.items


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a pattern is not compiled: past a limit (`limit` names it), or invalid."""

    message: str
    limit: str | None

    def error(self) -> EvalError:
        if self.limit is None:
            return InvalidPattern(self.message)
        return LimitExceeded(self.limit, self.message)


def compile_pattern(source: str, ignore_case: bool = False) -> Pattern:
    """The compiled pattern; raises `LimitExceeded` (limit `regex size`) for one too costly
    to compile, `InvalidPattern` for one that is not a regular expression."""
    if len(source) > MAX_PATTERN_CHARS:
        raise _refused(f"it is {len(source):,} characters long").error()
    key = (source, ignore_case)
    entry = _cache.get(key)
    if entry is None:
        entry = _compile(source, ignore_case)
        _cache.put(key, entry)
    if isinstance(entry, _Refusal):
        raise entry.error()
    return entry


def pattern_problem(source: str, ignore_case: bool = False) -> str | None:
    """Why `source` cannot be used as a pattern, in words; None when it can (the checks of
    literal patterns when a workflow is saved)."""
    try:
        compile_pattern(source, ignore_case)
    except EvalError as exc:
        return str(exc)
    return None


def _compile(source: str, ignore_case: bool) -> Pattern | _Refusal:
    import regex
    from regex import _regex_core

    # The package's parser and syntax tree, which its type stubs do not describe.
    core: Any = _regex_core
    flags = regex.IGNORECASE if ignore_case else 0
    if _depth(source) > MAX_PATTERN_DEPTH:
        return _refused(f"it nests groups more than {MAX_PATTERN_DEPTH} deep")
    # Without a counted repeat, a pattern has at most an item a character.
    items = len(source)
    if "{" in source:
        try:
            items = _size(_parse(core, source, flags), core.RegexBase)
        except (core.error, ValueError) as exc:
            return _invalid(exc)
        except RecursionError:
            return _refused("it is too complex to compile")
        if items > MAX_PATTERN_SIZE:
            return _refused(f"its counted repeats unrolled make {_count(items)} items")
    try:
        compiled = regex.compile(source, flags, cache_pattern=False)
    except (regex.error, ValueError, OverflowError) as exc:
        return _invalid(exc)
    except (RecursionError, MemoryError):
        return _refused("it is too complex to compile")
    return Pattern(compiled, items)


def _depth(source: str) -> int:
    """How deep groups nest in `source`, at most (a parenthesis in a comment counts too)."""
    depth = deepest = 0
    for match in _PARENTHESES.finditer(source):
        part = match.group()
        if part == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif part == ")":
            depth -= 1
    return deepest


def _parse(core: Any, source: str, flags: int) -> Any:
    """The `regex` package's parse of `source`, as `regex.compile` makes it (`core` is its
    `_regex_core`)."""
    global_flags = flags
    while True:
        text = core.Source(source)
        info = core.Info(global_flags, text.char_type, {})
        text.ignore_space = bool(info.flags & core.VERBOSE)
        text.use_unicode_space(bool(info.flags & core.VERSION1))
        try:
            return core._parse_pattern(text, info)
        except core._UnscopedFlagSet:
            # A flag set mid-pattern for all of it (`a(?i)b`): parsed again from the start.
            global_flags = info.global_flags


# Attributes of a parsed pattern's parts that hold other parts: one, or a list of them.
_PART = ("subpattern", "yes_item", "no_item")
_PARTS = ("items", "branches")


def _size(node: Any, part_type: type) -> int:
    """Items of a parsed pattern once its counted repeats are unrolled by their minimum
    (`part_type`: the parse's node class)."""
    inner = 0
    for name in _PART:
        part = getattr(node, name, None)
        if isinstance(part, part_type):
            inner += _size(part, part_type)
    for name in _PARTS:
        parts = getattr(node, name, None)
        if isinstance(parts, list | tuple):
            for part in parts:
                if isinstance(part, part_type):
                    inner += _size(part, part_type)
    min_count = getattr(node, "min_count", None)
    if isinstance(min_count, int):  # a repeat
        return 1 + max(1, min_count) * inner
    return 1 + inner


def _refused(why: str) -> _Refusal:
    error = exceeded(
        REGEX_SIZE,
        f"a regular expression too costly to compile: {why} (at most "
        f"{MAX_PATTERN_CHARS:,} characters, groups nested {MAX_PATTERN_DEPTH} deep and "
        f"{MAX_PATTERN_SIZE:,} items with counted repeats unrolled)",
    )
    return _Refusal(str(error), REGEX_SIZE)


def _invalid(exc: Exception) -> _Refusal:
    return _Refusal(str(exc), None)


def _count(number: int) -> str:
    return f"{number:,}" if number < 10**9 else f"about 10^{len(str(number)) - 1}"


def _weight(key: tuple[str, bool], entry: Pattern | _Refusal) -> int:
    return entry.items if isinstance(entry, Pattern) else 1


_cache: WeightedCache[tuple[str, bool], Pattern | _Refusal] = WeightedCache(
    CACHE_PATTERNS, CACHE_ITEMS, _weight
)


def cache_counts() -> tuple[int, int]:
    """(hits, misses) of the pattern cache since the process started."""
    return _cache.hits, _cache.misses
