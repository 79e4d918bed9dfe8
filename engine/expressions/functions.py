"""The functions and methods an expression may call. Nothing else is reachable.

Every function takes the rendering's `Budget` first, then JSON values (dict, list, str, int,
float, bool, None), and returns a JSON value. Each one charges the budget for the work it does
and checks the size of what it builds *before* building it (see `budget`). Methods are looked
up in per-type tables by name; no Python attribute is ever read from a value.

Over 400 lines, but one cohesive thing: the table of what an expression may call, each entry small.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import time
from collections.abc import Callable
from typing import Any

from engine.expressions.budget import (
    CONTAINER_STEPS,
    ELEMENTS_PER_STEP,
    MAX_ROUND_DIGITS,
    NUMBER_SIZE,
    Budget,
    exceeded,
    regex_exceeded,
)
from engine.expressions.errors import EvalError
from engine.expressions.patterns import Pattern, compile_pattern
from engine.json_depth import JsonTooDeep, nests_deeper

__all__ = ["EvalError", "to_text"]

# Steps per element where Python code handles each element (not C code on all at once).
JOIN_STEPS = 8
NUMBER_STEPS = 3
UNIQUE_STEPS = 4
REPLACE_STEPS = 4
_PLAIN_NUMBERS = {int, float}


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "reference"


def text_of(budget: Budget, value: Any, allowed: int | None = None) -> str:
    """How a value reads inside a string: JSON for structures, JavaScript-like for scalars.

    A list or object is measured first and refused when its text could not fit `allowed`
    characters (the value size limit by default); its text is then checked again, since
    JSON spells a number in more than one character.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int | float):
        return str(value)
    allowed = budget.limits.max_value_size if allowed is None else allowed
    size, containers = budget.measure(value, allowed)
    budget.check_size(size, "the text of this value")
    budget.charge(size + CONTAINER_STEPS * containers)  # encoding it: one pass
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise EvalError(f"cannot turn a {type_name(value)} into text") from exc
    budget.check_size(len(text), "the text of this value")
    return text


def to_text(value: Any, budget: Budget | None = None) -> str:
    """`text_of` for callers outside an evaluation (node behaviours): default limits."""
    return text_of(budget or Budget(), value)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise EvalError(f"{what} expects a string, got {type_name(value)}")
    return value


def _number(budget: Budget, value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        budget.charge_chars(len(value))
        try:
            number = float(value.strip())
        except ValueError as exc:
            raise EvalError(f"{value[:50]!r} is not a number") from exc
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    raise EvalError(f"cannot turn a {type_name(value)} into a number")


def _int(budget: Budget, value: Any) -> int:
    number = _number(budget, value)
    if isinstance(number, float) and not math.isfinite(number):
        raise EvalError("cannot turn an infinite number into an integer")
    return int(number)


def _round(budget: Budget, value: Any, digits: Any = 0) -> float | int:
    places = _int(budget, digits)
    if not -MAX_ROUND_DIGITS <= places <= MAX_ROUND_DIGITS:
        # Python would compute 10**places: round(5, -10000000) took seconds.
        raise exceeded(
            NUMBER_SIZE,
            f"round() to {places:,} digits; digits must be between "
            f"-{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}",
        )
    return round(_number(budget, value), places)


def _matches(budget: Budget, text: Any, pattern: Any) -> bool:
    subject, source = _text(text, "matches"), _text(pattern, "matches")
    return search(budget, compile_pattern(source), subject)


def search(budget: Budget, pattern: Pattern, subject: str) -> bool:
    """Whether `pattern` is found in `subject`, within what is left of the regex time."""
    budget.compiling(pattern.compiled.pattern, pattern.steps)
    budget.charge_chars(len(subject))
    timeout_s = budget.regex_timeout_s()
    started = time.perf_counter()
    try:
        return pattern.compiled.search(subject, timeout=timeout_s) is not None
    except TimeoutError:
        raise regex_exceeded(budget.limits.regex_timeout_s) from None
    finally:
        budget.spent_on_regex(time.perf_counter() - started)


def contains(budget: Budget, container: Any, element: Any, what: str = "contains") -> bool:
    """`contains(container, element)`, `.includes()`, `.has()` and `element in container`
    (`what` names the operation in errors): text in text, an element in a list, a key in
    an object."""
    if isinstance(container, str):
        budget.charge_chars(len(container))
        return _text(element, what) in container
    if isinstance(container, list):
        budget.membership(container, element)
        return element in container
    if isinstance(container, dict):
        return isinstance(element, str) and element in container  # keys are strings
    raise EvalError(f"{what} expects a string, array or object, got {type_name(container)}")


def _is_empty(budget: Budget, value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def _length(budget: Budget, value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise EvalError(f"a {type_name(value)} has no length")


def _split(budget: Budget, text: Any, separator: Any = None, limit: Any = -1) -> list[str]:
    source = _text(text, "split")
    max_parts = _int(budget, limit)
    # JavaScript's limit keeps the first parts (Python's maxsplit would keep the rest
    # joined in the last one): split at most that often, then drop the remainder.
    maxsplit = max_parts if max_parts >= 0 else -1
    budget.charge_chars(len(source))
    if separator == "":
        parts = len(source) if max_parts < 0 else min(len(source), max_parts)
        budget.check_size(1 + 2 * parts, "the parts of this text")
        budget.charge(parts)
        return list(source[:parts])
    if separator is None:
        # Whitespace runs: at most one part per two characters.
        bound = len(source) + (len(source) + 1) // 2 + 1
    else:
        separator = _text(separator, "split")
        separators = source.count(separator)
        bound = len(source) - separators * len(separator) + separators + 2
    budget.check_size(bound, "the parts of this text")
    parts_list = source.split(separator, maxsplit)
    budget.charge(len(parts_list))  # a new string each
    return parts_list if max_parts < 0 else parts_list[:max_parts]


def _join(budget: Budget, items: Any, separator: Any = ",") -> str:
    if not isinstance(items, list):
        raise EvalError(f"join expects an array, got {type_name(items)}")
    glue = _text(separator, "join")
    limit = budget.limits.max_value_size
    total = len(glue) * max(len(items) - 1, 0)
    budget.check_size(total, "the joined text")
    budget.charge(len(items))  # before looking at the elements, however many
    if set(map(type, items)) <= {str}:  # Python's C code joins strings at once
        budget.check_size(total + sum(map(len, items)), "the joined text")
        budget.charge_chars(total)
        return glue.join(items)
    # Each element turned into text one by one: a few steps each.
    budget.charge((JOIN_STEPS - 1) * len(items))
    pieces: list[str] = []
    for item in items:
        piece = text_of(budget, item, limit - total)
        total += len(piece)
        budget.check_size(total, "the joined text")
        pieces.append(piece)
    budget.charge_chars(total)
    return glue.join(pieces)


def _replace(budget: Budget, text: Any, old: Any, new: Any) -> str:
    source, old_text, new_text = (
        _text(text, "replace"),
        _text(old, "replace"),
        _text(new, "replace"),
    )
    budget.charge_chars(len(source))
    occurrences = source.count(old_text) if old_text else len(source) + 1
    size = len(source) + occurrences * (len(new_text) - len(old_text))
    budget.check_size(size, "the replaced text")
    # Replacing copies piece by piece: several times as slow per character as a scan.
    budget.charge_chars(REPLACE_STEPS * size)
    return source.replace(old_text, new_text)


def _slice(budget: Budget, value: Any, start: Any = None, end: Any = None) -> Any:
    if not isinstance(value, str | list):
        raise EvalError(f"slice expects a string or array, got {type_name(value)}")
    first = None if start is None else _int(budget, start)
    last = None if end is None else _int(budget, end)
    return sliced(budget, value, first, last)


def sliced(budget: Budget, value: str | list[Any], start: int | None, end: int | None) -> Any:
    """`value[start:end]`, charged by what it copies."""
    first, last, _ = slice(start, end).indices(len(value))
    copied = max(0, last - first)
    if isinstance(value, str):
        budget.check_size(copied, "the slice")
        budget.charge_chars(copied)
        return value[start:end]
    budget.charge_elements(copied)
    part = value[start:end]
    budget.check_value(part, "the slice")
    return part


def _index_of(budget: Budget, value: Any, element: Any) -> int:
    if isinstance(value, str):
        budget.charge_chars(len(value))
        return value.find(_text(element, "indexOf"))
    if isinstance(value, list):
        budget.membership(value, element)
        try:
            return value.index(element)
        except ValueError:
            return -1
    raise EvalError(f"indexOf expects a string or array, got {type_name(value)}")


def _keys(budget: Budget, value: Any) -> list[str]:
    if not isinstance(value, dict):
        raise EvalError(f"keys expects an object, got {type_name(value)}")
    budget.charge_elements(len(value))
    budget.check_size(len(value) + 1 + sum(map(len, value)), "the list of keys")
    return list(value)


def _values(budget: Budget, value: Any) -> list[Any]:
    if not isinstance(value, dict):
        raise EvalError(f"values expects an object, got {type_name(value)}")
    budget.charge_elements(len(value))
    values = list(value.values())
    budget.check_value(values, "the list of values")
    return values


def _numbers(budget: Budget, args: tuple[Any, ...], what: str) -> list[float | int]:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not values:
        raise EvalError(f"{what} of nothing")
    budget.charge(len(values))  # before looking at the elements, however many
    if set(map(type, values)) <= _PLAIN_NUMBERS:  # numbers already: nothing to convert
        return values
    budget.charge((NUMBER_STEPS - 1) * len(values))
    return [_number(budget, value) for value in values]


def _sum(budget: Budget, values: Any) -> float | int:
    if not isinstance(values, list):
        raise EvalError(f"sum expects an array, got {type_name(values)}")
    if not values:
        return 0
    return sum(_numbers(budget, (values,), "sum"))


def _parse_json(budget: Budget, text: Any) -> Any:
    source = _text(text, "parseJson")
    budget.check_size(len(source), "the text to parse")
    # Parsing costs about a step per 4 characters (one element per few characters).
    budget.charge(len(source) // 4)
    try:
        return json.loads(source)
    except ValueError as exc:
        raise EvalError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise EvalError("not valid JSON: nested too deeply") from exc


def _to_fixed(budget: Budget, value: Any, digits: Any = 0) -> str:
    places = _int(budget, digits)
    if not 0 <= places <= 20:
        raise EvalError("toFixed digits must be between 0 and 20")
    return f"{_number(budget, value):.{places}f}"


def _default(budget: Budget, value: Any, fallback: Any) -> Any:
    return fallback if _is_empty(budget, value) else value


def _log2(count: int) -> int:
    return max(1, count.bit_length())


def _sorted(budget: Budget, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise EvalError(f"sort expects an array, got {type_name(values)}")
    # About n log n comparisons, each as costly as the elements compared.
    work = budget.work(values, budget.limits.max_steps * ELEMENTS_PER_STEP)
    budget.charge_elements(work * _log2(len(values)))
    budget.check_value(values, "the sorted list")
    try:
        return sorted(values)
    except TypeError as exc:
        raise EvalError("cannot sort values of different types") from exc


def _unique_key(value: Any) -> Any:
    """A hashable key under which equal JSON values meet (1 and 1.0 do, as `==` says)."""
    if isinstance(value, list | dict):
        return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))
    return value


def _unique(budget: Budget, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise EvalError(f"unique expects an array, got {type_name(values)}")
    # Each element is keyed (containers by their JSON text) and looked up: a few steps.
    budget.charge(UNIQUE_STEPS * budget.work(values))
    budget.check_value(values, "the list of unique values")
    first_seen: dict[Any, Any] = {}
    for value in values:
        first_seen.setdefault(_unique_key(value), value)
    return list(first_seen.values())


def _lower(budget: Budget, text: Any) -> str:
    return _cased(budget, _text(text, "lower"), str.lower)


def _upper(budget: Budget, text: Any) -> str:
    return _cased(budget, _text(text, "upper"), str.upper)


def _cased(budget: Budget, text: str, change: Callable[[str], str]) -> str:
    budget.check_size(len(text), "the text")
    budget.charge_chars(len(text))
    result = change(text)  # 'ß'.upper() is 'SS': at most three times as long
    budget.check_size(len(result), "the text")
    return result


def _trim(budget: Budget, text: Any) -> str:
    source = _text(text, "trim")
    budget.charge_chars(len(source))
    return source.strip()


def _starts_with(budget: Budget, text: Any, prefix: Any) -> bool:
    start = _text(prefix, "startsWith")
    budget.charge_chars(len(start))
    return _text(text, "startsWith").startswith(start)


def _ends_with(budget: Budget, text: Any, suffix: Any) -> bool:
    end = _text(suffix, "endsWith")
    budget.charge_chars(len(end))
    return _text(text, "endsWith").endswith(end)


def _boolean(budget: Budget, value: Any) -> bool:
    return not _is_empty(budget, value) and value is not False and value != 0


def _minimum(budget: Budget, *args: Any) -> float | int:
    return min(_numbers(budget, args, "min"))


def _maximum(budget: Budget, *args: Any) -> float | int:
    return max(_numbers(budget, args, "max"))


def _get(budget: Budget, obj: dict[str, Any], key: Any, fallback: Any = None) -> Any:
    return obj.get(_text(key, "get"), fallback)


Function = Callable[..., Any]


def _parse_json_within_limit(budget: Budget, text: Any) -> Any:
    """`parseJson`, refusing JSON nested past the nesting limit (engine/json_depth.py)."""
    value = _parse_json(budget, text)
    if nests_deeper(value):
        raise EvalError(f"parseJson: the text is {JsonTooDeep()}")
    return value


FUNCTIONS: dict[str, Function] = {
    "len": _length,
    "length": _length,
    "str": text_of,
    "string": text_of,
    "number": _number,
    "float": _number,
    "int": _int,
    "bool": _boolean,
    "round": _round,
    "floor": lambda budget, value: math.floor(_number(budget, value)),
    "ceil": lambda budget, value: math.ceil(_number(budget, value)),
    "abs": lambda budget, value: abs(_number(budget, value)),
    "min": _minimum,
    "max": _maximum,
    "sum": _sum,
    "lower": _lower,
    "upper": _upper,
    "trim": _trim,
    "split": _split,
    "join": _join,
    "replace": _replace,
    "contains": contains,
    "startsWith": _starts_with,
    "endsWith": _ends_with,
    "matches": _matches,
    "isEmpty": _is_empty,
    "exists": lambda budget, value: value is not None,
    "keys": _keys,
    "values": _values,
    "json": text_of,
    "parseJson": _parse_json_within_limit,
    "default": _default,
    "typeOf": lambda budget, value: type_name(value),
    "sorted": _sorted,
    "unique": _unique,
}

STRING_METHODS: dict[str, Function] = {
    "toLowerCase": _lower,
    "lower": _lower,
    "toUpperCase": _upper,
    "upper": _upper,
    "trim": _trim,
    "strip": _trim,
    "split": _split,
    "startsWith": _starts_with,
    "startswith": _starts_with,
    "endsWith": _ends_with,
    "endswith": _ends_with,
    "includes": contains,
    "contains": contains,
    "replace": _replace,
    "replaceAll": _replace,
    "slice": _slice,
    "substring": _slice,
    "indexOf": _index_of,
    "matches": _matches,
    "toString": text_of,
    "toNumber": _number,
    "isEmpty": _is_empty,
}

LIST_METHODS: dict[str, Function] = {
    "includes": contains,
    "contains": contains,
    "join": _join,
    "slice": _slice,
    "indexOf": _index_of,
    "first": lambda budget, items: items[0] if items else None,
    "last": lambda budget, items: items[-1] if items else None,
    "sum": _sum,
    "min": lambda budget, items: min(_numbers(budget, (items,), "min")),
    "max": lambda budget, items: max(_numbers(budget, (items,), "max")),
    "sort": _sorted,
    "unique": _unique,
    "isEmpty": _is_empty,
    "toString": text_of,
}

OBJECT_METHODS: dict[str, Function] = {
    "keys": _keys,
    "values": _values,
    "get": _get,
    "has": contains,
    "isEmpty": _is_empty,
    "toString": text_of,
}

NUMBER_METHODS: dict[str, Function] = {
    "toFixed": _to_fixed,
    "round": _round,
    "toString": text_of,
}

# The last parameters of these are not the user's: `str(x, 5)` is one argument too many.
_HIDDEN_PARAMETERS = {text_of: 1, contains: 1}


@functools.cache
def _arity(function: Function) -> tuple[int, int | None]:
    """How many arguments a function takes, after the budget: at least, and at most (None:
    any number)."""
    required, most = 0, 0
    parameters = list(inspect.signature(function).parameters.values())[1:]
    for parameter in parameters[: len(parameters) - _HIDDEN_PARAMETERS.get(function, 0)]:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return required, None
        most += 1
        if parameter.default is inspect.Parameter.empty:
            required += 1
    return required, most


def arity_problem(name: str, function: Function, count: int, *, receiver: bool = False) -> str:
    """What is wrong with calling `name` with `count` arguments ("" when nothing is): the
    words a user reads, not Python's (which name its internal functions)."""
    required, most = _arity(function)
    if receiver:  # a method: the value it is called on is its first parameter
        required, most = required - 1, None if most is None else most - 1
    if count >= required and (most is None or count <= most):
        return ""
    if most is None:
        takes = f"at least {required}"
    elif required == most:
        takes = str(required)
    else:
        takes = f"{required} to {most}"
    plural = "" if takes == "1" else "s"
    return f"{name}() takes {takes} argument{plural}, got {count}"


def method(receiver: Any, name: str) -> Function | None:
    """The method `name` of a JSON value's type, if it has one."""
    if isinstance(receiver, str):
        return STRING_METHODS.get(name)
    if isinstance(receiver, list):
        return LIST_METHODS.get(name)
    if isinstance(receiver, dict):
        return OBJECT_METHODS.get(name)
    if isinstance(receiver, int | float) and not isinstance(receiver, bool):
        return NUMBER_METHODS.get(name)
    return None
