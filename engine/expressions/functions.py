"""The functions and methods an expression may call. Nothing else is reachable.

Every function takes and returns JSON values (dict, list, str, int, float, bool, None). Methods
are looked up in per-type tables by name; no Python attribute is ever read from a value.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import regex

from engine.expressions.errors import ExpressionEvaluationError
from engine.json_depth import JsonTooDeep, nests_deeper

T = TypeVar("T")

MAX_STRING_CHARS = 1_000_000
MAX_LIST_ITEMS = 100_000
REGEX_TIMEOUT_S = 0.1
MAX_PARSE_JSON_CHARS = 1_000_000


class EvalError(Exception):
    """Raised inside evaluation; the compiler adds the expression text."""


def check_size(value: T) -> T:
    """Refuse strings and lists past the evaluation limits."""
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise EvalError(f"string result longer than {MAX_STRING_CHARS} characters")
    if isinstance(value, list | dict) and len(value) > MAX_LIST_ITEMS:
        raise EvalError(f"result with more than {MAX_LIST_ITEMS} elements")
    return value


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


def to_text(value: Any) -> str:
    """How a value reads inside a string: JSON for structures, JavaScript-like for scalars."""
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
    try:
        return check_size(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise EvalError(f"cannot turn a {type_name(value)} into text") from exc


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise EvalError(f"{what} expects a string, got {type_name(value)}")
    return value


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError as exc:
            raise EvalError(f"{value[:50]!r} is not a number") from exc
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    raise EvalError(f"cannot turn a {type_name(value)} into a number")


def _int(value: Any) -> int:
    number = _number(value)
    if isinstance(number, float) and not math.isfinite(number):
        raise EvalError("cannot turn an infinite number into an integer")
    return int(number)


def _round(value: Any, digits: Any = 0) -> float | int:
    result = round(_number(value), _int(digits))
    return result


def _matches(text: Any, pattern: Any) -> bool:
    try:
        return (
            regex.search(_text(pattern, "matches"), _text(text, "matches"), timeout=REGEX_TIMEOUT_S)
            is not None
        )
    except TimeoutError as exc:
        raise EvalError(f"regular expression took longer than {REGEX_TIMEOUT_S} s") from exc
    except regex.error as exc:
        raise EvalError(f"invalid regular expression: {exc}") from exc


def _contains(container: Any, element: Any) -> bool:
    if isinstance(container, str):
        return _text(element, "contains") in container
    if isinstance(container, list):
        return element in container
    if isinstance(container, dict):
        return isinstance(element, str) and element in container  # keys are strings
    raise EvalError(f"contains expects a string, array or object, got {type_name(container)}")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def _length(value: Any) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise EvalError(f"a {type_name(value)} has no length")


def _split(text: Any, separator: Any = None, limit: Any = -1) -> list[str]:
    source = _text(text, "split")
    if separator == "":
        parts = list(source)
    else:
        parts = source.split(None if separator is None else _text(separator, "split"))
    max_parts = _int(limit)
    return check_size(parts if max_parts < 0 else parts[:max_parts])


def _join(items: Any, separator: Any = ",") -> str:
    if not isinstance(items, list):
        raise EvalError(f"join expects an array, got {type_name(items)}")
    return check_size(_text(separator, "join").join(to_text(item) for item in items))


def _replace(text: Any, old: Any, new: Any) -> str:
    source, old_text, new_text = (
        _text(text, "replace"),
        _text(old, "replace"),
        _text(new, "replace"),
    )
    occurrences = source.count(old_text) if old_text else len(source) + 1
    if len(source) + occurrences * (len(new_text) - len(old_text)) > MAX_STRING_CHARS:
        raise EvalError(f"string result longer than {MAX_STRING_CHARS} characters")
    return source.replace(old_text, new_text)


def _slice(value: Any, start: Any = None, end: Any = None) -> Any:
    if not isinstance(value, str | list):
        raise EvalError(f"slice expects a string or array, got {type_name(value)}")
    return value[None if start is None else _int(start) : None if end is None else _int(end)]


def _index_of(value: Any, element: Any) -> int:
    if isinstance(value, str):
        return value.find(_text(element, "indexOf"))
    if isinstance(value, list):
        return value.index(element) if element in value else -1
    raise EvalError(f"indexOf expects a string or array, got {type_name(value)}")


def _keys(value: Any) -> list[str]:
    if not isinstance(value, dict):
        raise EvalError(f"keys expects an object, got {type_name(value)}")
    return list(value)


def _values(value: Any) -> list[Any]:
    if not isinstance(value, dict):
        raise EvalError(f"values expects an object, got {type_name(value)}")
    return list(value.values())


def _numbers(args: tuple[Any, ...], what: str) -> list[float | int]:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not values:
        raise EvalError(f"{what} of nothing")
    return [_number(value) for value in values]


def _sum(values: Any) -> float | int:
    if not isinstance(values, list):
        raise EvalError(f"sum expects an array, got {type_name(values)}")
    return sum(_number(value) for value in values)


def _parse_json(text: Any) -> Any:
    source = _text(text, "parseJson")
    if len(source) > MAX_PARSE_JSON_CHARS:
        raise EvalError("text too long to parse as JSON")
    try:
        return json.loads(source)
    except ValueError as exc:
        raise EvalError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise EvalError("not valid JSON: nested too deeply") from exc


def _to_fixed(value: Any, digits: Any = 0) -> str:
    places = _int(digits)
    if not 0 <= places <= 20:
        raise EvalError("toFixed digits must be between 0 and 20")
    return f"{_number(value):.{places}f}"


def _default(value: Any, fallback: Any) -> Any:
    return fallback if _is_empty(value) else value


def _sorted(values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise EvalError(f"sort expects an array, got {type_name(values)}")
    try:
        return sorted(values)
    except TypeError as exc:
        raise EvalError("cannot sort values of different types") from exc


def _unique(values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise EvalError(f"unique expects an array, got {type_name(values)}")
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


Function = Callable[..., Any]


def _parse_json_within_limit(text: Any) -> Any:
    """`parseJson`, refusing JSON nested past the nesting limit (engine/json_depth.py)."""
    value = _parse_json(text)
    if nests_deeper(value):
        raise EvalError(f"parseJson: the text is {JsonTooDeep()}")
    return value


FUNCTIONS: dict[str, Function] = {
    "len": _length,
    "length": _length,
    "str": to_text,
    "string": to_text,
    "number": _number,
    "float": _number,
    "int": _int,
    "bool": lambda value: not _is_empty(value) and value is not False and value != 0,
    "round": _round,
    "floor": lambda value: math.floor(_number(value)),
    "ceil": lambda value: math.ceil(_number(value)),
    "abs": lambda value: abs(_number(value)),
    "min": lambda *args: min(_numbers(args, "min")),
    "max": lambda *args: max(_numbers(args, "max")),
    "sum": _sum,
    "lower": lambda text: _text(text, "lower").lower(),
    "upper": lambda text: _text(text, "upper").upper(),
    "trim": lambda text: _text(text, "trim").strip(),
    "split": _split,
    "join": _join,
    "replace": _replace,
    "contains": _contains,
    "startsWith": lambda text, prefix: _text(text, "startsWith").startswith(
        _text(prefix, "startsWith")
    ),
    "endsWith": lambda text, suffix: _text(text, "endsWith").endswith(_text(suffix, "endsWith")),
    "matches": _matches,
    "isEmpty": _is_empty,
    "exists": lambda value: value is not None,
    "keys": _keys,
    "values": _values,
    "json": to_text,
    "parseJson": _parse_json_within_limit,
    "default": _default,
    "typeOf": type_name,
    "sorted": _sorted,
    "unique": _unique,
}

STRING_METHODS: dict[str, Function] = {
    "toLowerCase": FUNCTIONS["lower"],
    "lower": FUNCTIONS["lower"],
    "toUpperCase": FUNCTIONS["upper"],
    "upper": FUNCTIONS["upper"],
    "trim": FUNCTIONS["trim"],
    "strip": FUNCTIONS["trim"],
    "split": _split,
    "startsWith": FUNCTIONS["startsWith"],
    "startswith": FUNCTIONS["startsWith"],
    "endsWith": FUNCTIONS["endsWith"],
    "endswith": FUNCTIONS["endsWith"],
    "includes": _contains,
    "contains": _contains,
    "replace": _replace,
    "replaceAll": _replace,
    "slice": _slice,
    "substring": _slice,
    "indexOf": _index_of,
    "matches": _matches,
    "toString": to_text,
    "toNumber": _number,
    "isEmpty": _is_empty,
}

LIST_METHODS: dict[str, Function] = {
    "includes": _contains,
    "contains": _contains,
    "join": _join,
    "slice": _slice,
    "indexOf": _index_of,
    "first": lambda items: items[0] if items else None,
    "last": lambda items: items[-1] if items else None,
    "sum": _sum,
    "min": lambda items: min(_numbers((items,), "min")),
    "max": lambda items: max(_numbers((items,), "max")),
    "sort": _sorted,
    "unique": _unique,
    "isEmpty": _is_empty,
    "toString": to_text,
}

OBJECT_METHODS: dict[str, Function] = {
    "keys": _keys,
    "values": _values,
    "get": lambda obj, key, fallback=None: obj.get(_text(key, "get"), fallback),
    "has": _contains,
    "isEmpty": _is_empty,
    "toString": to_text,
}

NUMBER_METHODS: dict[str, Function] = {
    "toFixed": _to_fixed,
    "round": _round,
    "toString": to_text,
}


@functools.cache
def _arity(function: Function) -> tuple[int, int | None]:
    """How many arguments a function takes: at least, and at most (None: any number)."""
    required, most = 0, 0
    for parameter in inspect.signature(function).parameters.values():
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


def raise_evaluation(exc: Exception, expression: str) -> ExpressionEvaluationError:
    return ExpressionEvaluationError(str(exc), expression)
