"""How messages quote what the user wrote: bounded, escaped, and always encodable."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from engine.graph import Node

# Control characters (C0, DEL, C1) in ids and names break logs, expressions and display; lone
# surrogates are not Unicode text at all and fail UTF-8 encoding on the way to the database.
BAD_IN_LABEL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Free text (parameters, notes) may hold tabs and newlines, but PostgreSQL stores neither NUL
# nor lone surrogates in text or JSONB.
BAD_IN_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

# How much of a user's value or name a message quotes.
_MAX_SHOWN_CHARS = 60

PathSegment = str | int


def field_path(path: Iterable[PathSegment]) -> str:
    """("fields", 0, "name") -> "parameters.fields[0].name", in jsonschema's json_path style."""
    text = "parameters"
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif _IDENTIFIER.fullmatch(segment):
            text += f".{segment}"
        else:
            text += "['" + escape(segment.replace("\\", "\\\\").replace("'", "\\'")) + "']"
    return text


def label(node: Node, *, quoted: bool = True) -> str:
    """How messages name a node: by its name, or by its id when the name is blank."""
    text = node.name if node.name.strip() else node.id
    return quote(text) if quoted else clip(escape(text[: _MAX_SHOWN_CHARS + 1]))


def quote(text: str) -> str:
    # Cut before escaping: a quoted value may be a 256 KiB parameter.
    return f"'{clip(escape(text[: _MAX_SHOWN_CHARS + 1]))}'"


def show(value: object) -> str:
    """A value as a message shows it: strings quoted, everything else as JSON, all bounded."""
    if isinstance(value, str):
        return quote(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return clip(escape(text[: _MAX_SHOWN_CHARS + 1]))


def escape(text: str) -> str:
    """Control characters and lone surrogates as \\uXXXX, so messages always encode cleanly."""
    return BAD_IN_LABEL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def clip(text: str, limit: int = _MAX_SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def codepoint(character: str) -> str:
    return f"U+{ord(character):04X}"
