"""Building the JSON Schemas of node types' parameters (Draft 2020-12).

The validator reads them before a run and the editor builds its forms from them (`title`,
`description`, `default`, `enum`). Any parameter string may hold expressions
(`{{ $json.price }}`): numeric parameters that users commonly compute accept a number or a
string holding an expression, and `errorMessage` (the ajv-errors convention, read by
`engine.validation`) words the error for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JSONSchema = dict[str, Any]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# A string holding both `{{` and `}}` is taken for an expression; the expression parser checks
# it properly. Two anchored lookaheads keep the match linear: `\{\{[\s\S]*\}\}` backtracks
# quadratically on a long run of `{{`, which a 256 KiB parameter could turn into a stall.
EXPRESSION_PATTERN = r"^(?=[\s\S]*\{\{)(?=[\s\S]*\}\})"

# Date and time as ISO 8601 (`2025-01-31T09:00:00Z`), or an expression producing one.
DATE_TIME_OR_EXPRESSION_PATTERN = (
    r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})?$|(?=[\s\S]*\{\{)(?=[\s\S]*\}\}))"
)


def text(title: str, description: str, **extra: Any) -> JSONSchema:
    return {"type": "string", "title": title, "description": description, **extra}


def flag(title: str, description: str, *, default: bool) -> JSONSchema:
    return {"type": "boolean", "title": title, "description": description, "default": default}


def choice(title: str, description: str, options: Sequence[str], *, default: str) -> JSONSchema:
    return {
        "type": "string",
        "title": title,
        "description": description,
        "enum": list(options),
        "default": default,
    }


def any_value(title: str, description: str) -> JSONSchema:
    return {"title": title, "description": description}


def number_or_expression(
    title: str, description: str, *, integer: bool, minimum: float, default: float | None = None
) -> JSONSchema:
    # `minimum` only constrains numbers and `pattern` only strings, so one schema covers both
    # forms without an anyOf, whose errors read badly.
    kind = "a whole number" if integer else "a number"
    wrong = f"must be {kind} or an expression such as {{{{ $json.count }}}}"
    schema: JSONSchema = {
        "type": ["integer" if integer else "number", "string"],
        "title": title,
        "description": description,
        "minimum": minimum,
        "pattern": EXPRESSION_PATTERN,
        "errorMessage": {"type": wrong, "pattern": wrong},
    }
    if default is not None:
        schema["default"] = default
    return schema


def object_of(
    properties: dict[str, JSONSchema], required: Sequence[str] = (), **extra: Any
) -> JSONSchema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def list_of(
    title: str, description: str, item: JSONSchema, *, min_items: int = 0, **extra: Any
) -> JSONSchema:
    return {
        "type": "array",
        "title": title,
        "description": description,
        "items": item,
        "minItems": min_items,
        **extra,
    }


def parameters(
    properties: dict[str, JSONSchema], required: Sequence[str] = (), **extra: Any
) -> JSONSchema:
    return {"$schema": DRAFT_2020_12, **object_of(properties, required, **extra)}


def when(
    field: str, value: str, required: Sequence[str], otherwise: Sequence[str] = ()
) -> JSONSchema:
    """`if`/`then`/`else`: what is required once `field` is `value`, and what otherwise."""
    branches: JSONSchema = {
        "if": {"properties": {field: {"const": value}}, "required": [field]},
        "then": {"required": list(required)},
    }
    if otherwise:
        branches["else"] = {"required": list(otherwise)}
    return branches
