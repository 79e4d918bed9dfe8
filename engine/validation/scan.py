"""Structural checks of what a node carries: text the database cannot store, and parameters
too deep or too large to check against a schema."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from engine.graph import Node
from engine.validation.report import GraphLimits, Problem
from engine.validation.text import BAD_IN_TEXT, PathSegment, codepoint, escape, field_path


@dataclass(frozen=True, slots=True)
class ParameterScan:
    problems: list[Problem]
    # False when the parameters are too deep or too large for the schema check to be spent.
    checkable: bool
    # The parameters as JSON text, when they are plain JSON that the text stands for exactly.
    encoded: str | None


_JSON_SCALARS = (str, int, float, bool, type(None))
# How NUL and lone surrogates look in `json.dumps(..., ensure_ascii=False)` output. A match may
# be a false alarm (an escaped backslash before "u0000"); the walk that follows settles it.
_BAD_IN_ENCODED = re.compile(r"\\u0000|[\ud800-\udfff]")


def scan_parameters(node: Node, limits: GraphLimits) -> ParameterScan:
    """Text the database cannot store, nesting depth and size of a node's parameters."""
    problems = [
        _unstorable(node, field, match.group())
        for field, text in (("notes", node.notes), *_credential_texts(node))
        if (match := BAD_IN_TEXT.search(text))
    ]
    too_deep, plain_json = _shape(node.parameters, limits.max_parameters_depth)
    if too_deep:
        problems.append(
            Problem(
                "PARAMETERS_TOO_DEEP",
                f"Parameters are nested more than {limits.max_parameters_depth} levels deep",
                node.id,
                "parameters",
            )
        )
        return ParameterScan(problems, checkable=False, encoded=None)
    # default=str and skipkeys: values that are not JSON get a size estimate, never a crash.
    encoded = json.dumps(node.parameters, ensure_ascii=False, skipkeys=True, default=str)
    if _BAD_IN_ENCODED.search(encoded):
        problems.extend(_unstorable_parameters(node))
    size = len(encoded) if encoded.isascii() else len(encoded.encode("utf-8", "surrogatepass"))
    if size > limits.max_parameters_bytes:
        problems.append(
            Problem(
                "PARAMETERS_TOO_LARGE",
                f"Parameters take {size} bytes; the limit is {limits.max_parameters_bytes}",
                node.id,
                "parameters",
            )
        )
        return ParameterScan(problems, checkable=False, encoded=None)
    return ParameterScan(problems, checkable=True, encoded=encoded if plain_json else None)


def _shape(parameters: object, max_depth: int) -> tuple[bool, bool]:
    """Whether the value nests deeper than `max_depth`, and whether it is plain JSON.

    An explicit stack instead of recursion: no nesting can exhaust the recursion limit.
    """
    plain_json = True
    stack: list[tuple[object, int]] = [(parameters, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            plain_json = plain_json and all(isinstance(key, str) for key in value)
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            plain_json = plain_json and isinstance(value, _JSON_SCALARS)
            continue
        if depth > max_depth:
            return True, plain_json
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif not isinstance(child, _JSON_SCALARS):
                plain_json = False
    return False, plain_json


def _unstorable_parameters(node: Node) -> list[Problem]:
    """Every NUL or lone surrogate in parameter keys and strings, with its path, in order."""
    problems = []
    stack: list[tuple[object, tuple[PathSegment, ...]]] = [(node.parameters, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if match := BAD_IN_TEXT.search(value):
                problems.append(_unstorable(node, field_path(path), match.group()))
        elif isinstance(value, list):
            stack.extend((value[i], (*path, i)) for i in reversed(range(len(value))))
        elif isinstance(value, dict):
            for key in reversed(value):
                if isinstance(key, str) and (match := BAD_IN_TEXT.search(key)):
                    where = field_path((*path, key))
                    problems.append(_unstorable(node, where, match.group(), what="The key of "))
                stack.append((value[key], (*path, key)))
    return problems


def _credential_texts(node: Node) -> Iterator[tuple[str, str]]:
    for kind, credential_id in node.credentials.items():
        field = f"credentials.{escape(kind)}"
        yield field, kind
        yield field, credential_id


def _unstorable(node: Node, field: str, character: str, what: str = "") -> Problem:
    return Problem(
        "INVALID_CHARACTER",
        f"{what}{field} contains the character {codepoint(character)}, which cannot be stored",
        node.id,
        field,
    )
