"""The nodes a script names literally: `$("Name")`, `$node["Name"]`, `$node.Name` (pure)."""

from __future__ import annotations

import re

# A quoted name: '...', "..." or `...` without `${`, with backslash escapes.
_QUOTED = r"""(?P<quote>["'`])(?P<name>(?:\\.|(?!(?P=quote))[^\\])*)(?P=quote)"""
_CALL = re.compile(r"\$\(\s*" + _QUOTED + r"\s*\)")
_INDEX = re.compile(r"\$node\s*\[\s*" + _QUOTED + r"\s*\]")
_MEMBER = re.compile(r"\$node\s*\.\s*(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)")
_ESCAPE = re.compile(r"\\(.)")


def script_references(code: str) -> set[str]:
    """Names of the nodes the script refers to with a literal name (comments included: a
    reference in a comment is one a reader takes for real)."""
    names = {_ESCAPE.sub(r"\1", match["name"]) for match in _CALL.finditer(code)}
    names.update(_ESCAPE.sub(r"\1", match["name"]) for match in _INDEX.finditer(code))
    names.update(match["name"] for match in _MEMBER.finditer(code))
    return {name for name in names if "${" not in name}


def offered_nodes(code: str, upstream: set[str] | frozenset[str]) -> set[str]:
    """The upstream nodes whose items a call passes in: those whose name appears anywhere in
    the script, so `$(name)` with the name held in a variable works too."""
    return {name for name in upstream if name and name in code}
