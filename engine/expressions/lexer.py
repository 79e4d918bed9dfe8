"""Splitting templates into text and `{{ ... }}` expressions, and rewriting an expression's
surface syntax into the Python expression subset the compiler checks.

The rewrite is lexical and aware of string literals: `$json` becomes `_S_json`, `$("X")`
becomes `_S_("X")`, and the JavaScript spellings people type from habit (`&&`, `||`, `!`,
`===`, `!==`, `true`, `false`, `null`, `undefined`) become their Python equivalents. Nothing
inside a string literal is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.expressions.errors import ExpressionSyntaxError

OPEN, CLOSE = "{{", "}}"
DOLLAR_PREFIX = "_S_"
_IDENTIFIER_START = re.compile(r"[A-Za-z_]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_ALIASES = {"true": "True", "false": "False", "null": "None", "undefined": "None"}


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a template: literal text, or the source of one expression."""

    text: str
    is_expression: bool


def _skip_string(source: str, start: int) -> int:
    """Index just past the string literal that opens at `start`."""
    quote = source[start]
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index + 1
        index += 1
    return len(source)


def split_template(template: str) -> list[Segment]:
    """Split `a {{ x }} b` into text and expression segments.

    Braces inside string literals of an expression do not close it. An unclosed `{{` is an
    error, as is an empty expression.
    """
    segments: list[Segment] = []
    position = 0
    while True:
        start = template.find(OPEN, position)
        if start < 0:
            if position < len(template):
                segments.append(Segment(template[position:], False))
            return segments
        if start > position:
            segments.append(Segment(template[position:start], False))
        index = start + len(OPEN)
        while index < len(template):
            char = template[index]
            if char in "\"'":
                index = _skip_string(template, index)
                continue
            if template.startswith(CLOSE, index):
                break
            index += 1
        else:
            raise ExpressionSyntaxError("unclosed '{{'", template[start + 2 :].strip())
        source = template[start + len(OPEN) : index].strip()
        if not source:
            raise ExpressionSyntaxError("empty expression", "")
        segments.append(Segment(source, True))
        position = index + len(CLOSE)


def has_expression(value: str) -> bool:
    return OPEN in value


def to_python(source: str) -> str:
    """Rewrite `$names` and JavaScript operator spellings outside string literals."""
    out: list[str] = []
    index = 0
    length = len(source)
    while index < length:
        char = source[index]
        if char in "\"'":
            end = _skip_string(source, index)
            out.append(source[index:end])
            index = end
            continue
        if char == "$":
            match = _IDENTIFIER.match(source, index + 1)
            if match:
                out.append(DOLLAR_PREFIX + match.group())
                index = match.end()
            else:
                out.append(DOLLAR_PREFIX)
                index += 1
            continue
        if source.startswith("===", index) or source.startswith("!==", index):
            out.append("==" if char == "=" else "!=")
            index += 3
            continue
        if source.startswith("&&", index):
            out.append(" and ")
            index += 2
            continue
        if source.startswith("||", index):
            out.append(" or ")
            index += 2
            continue
        if char == "!" and not source.startswith("!=", index):
            out.append(" not ")
            index += 1
            continue
        if _IDENTIFIER_START.match(char) and (index == 0 or not _is_word_char(source[index - 1])):
            match = _IDENTIFIER.match(source, index)
            assert match is not None
            word = match.group()
            out.append(_WORD_ALIASES.get(word, word))
            index = match.end()
            continue
        out.append(char)
        index += 1
    return "".join(out)


def as_written(python: str) -> str:
    """Text of the rewritten expression (a name, a piece, a parser message) with `$`
    names spelled as the user wrote them."""
    return python.replace(DOLLAR_PREFIX, "$")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char in "_."
