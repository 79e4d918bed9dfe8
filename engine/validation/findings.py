"""jsonschema errors in words for the person filling in the form, at most one per field."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import ValidationError
from jsonschema.exceptions import best_match

from engine.validation.text import clip, escape, field_path, quote, show

# When several keywords fail on one field, the user sees one problem: the most telling one.
_KEYWORD_RANK = {"required": 0, "enum": 1, "const": 1, "type": 2}

# How long a message borrowed from jsonschema may be, and how many options an enum lists.
_MAX_MESSAGE_CHARS = 300
_MAX_OPTIONS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """A parameter problem before it is tied to a node, so that it can be memoised."""

    code: str
    message: str
    field: str
    rank: int


def findings_from_error(error: ValidationError) -> Iterator[Finding]:
    path = tuple(error.absolute_path)
    field = field_path(path)
    keyword = str(error.validator)
    rank = _KEYWORD_RANK.get(keyword, 3)
    if keyword == "required":
        name = field.removeprefix("parameters").removeprefix(".")
        blank = isinstance(error.instance, Mapping) and bool(path) and path[-1] in error.instance
        verb = "must not be empty" if blank else "is required"
        yield Finding("MISSING_PARAMETER", f"Parameter {quote(name)} {verb}", field, rank)
        return
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        known = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key in error.instance:
            if key not in known and not any(re.search(pattern, key) for pattern in patterns):
                where = field_path((*path, key))
                message = f"{where}: unknown parameter {quote(key)}"
                yield Finding("INVALID_PARAMETER", message, where, rank)
        return
    if keyword in ("anyOf", "oneOf") and error.context:
        # Name the alternative that came closest instead of "not valid under any"; best_match
        # walks into the alternatives and stays on `error` when none stands out.
        closest = best_match([error])
        if closest is not error:
            yield from findings_from_error(closest)
            return
    yield Finding("INVALID_PARAMETER", f"{field}: {_explain(error)}", field, rank)


def one_per_field(findings: list[Finding]) -> tuple[Finding, ...]:
    """The findings in order, keeping only the best ranked one for each field."""
    best: dict[str, Finding] = {}
    for finding in findings:
        kept = best.get(finding.field)
        if kept is None or finding.rank < kept.rank:
            best[finding.field] = finding
    return tuple(finding for finding in findings if best[finding.field] is finding)


_TYPE_WORDS = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _explain(error: ValidationError) -> str:
    """The error in words for the person filling in the form."""
    keyword = str(error.validator)
    expected: Any = error.validator_value
    value = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    custom = schema.get("errorMessage")
    if isinstance(custom, Mapping):
        custom = custom.get(keyword)
    if isinstance(custom, str):
        return custom
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds)
        return f"expected {wanted}, got {show(value)}"
    if keyword == "enum":
        options = ", ".join(show(option) for option in list(expected)[:_MAX_OPTIONS_SHOWN])
        more = ", ..." if len(expected) > _MAX_OPTIONS_SHOWN else ""
        return f"{show(value)} is not one of {options}{more}"
    if keyword == "const":
        return f"must be {show(expected)}"
    if keyword == "minimum":
        return f"{show(value)} is less than the minimum of {show(expected)}"
    if keyword == "maximum":
        return f"{show(value)} is more than the maximum of {show(expected)}"
    if keyword == "exclusiveMinimum":
        return f"{show(value)} must be more than {show(expected)}"
    if keyword == "exclusiveMaximum":
        return f"{show(value)} must be less than {show(expected)}"
    if keyword == "minLength":
        return f"must be at least {expected} characters long"
    if keyword == "maxLength":
        return f"must be at most {expected} characters long"
    if keyword == "minItems":
        return f"must have at least {expected} {'entry' if expected == 1 else 'entries'}"
    if keyword == "maxItems":
        return f"must have at most {expected} {'entry' if expected == 1 else 'entries'}"
    if keyword == "pattern":
        return f"{show(value)} does not match the pattern {show(expected)}"
    if keyword == "uniqueItems":
        return "entries must all be different"
    if keyword in ("anyOf", "oneOf"):
        if error.context:
            return f"{show(value)} does not match any of the allowed forms"
        return f"{show(value)} matches more than one of the allowed forms"
    if keyword == "not":
        return f"{show(value)} is not allowed here"
    # Keywords without a dedicated wording: jsonschema's own message, bounded in length.
    return clip(escape(error.message), _MAX_MESSAGE_CHARS)
