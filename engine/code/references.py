"""Which nodes a script reaches with `$("Name")`, `$node["Name"]` or `$node.Name` (pure).

A call passes in only the upstream outputs a script can reach, so the source is read for
them. Every place where `$`, `$node` or `arguments` (through which a script also reaches
`$`) appears in the text counts, wherever it stands (code, string or comment: a comment
that names a node is read as a reference too), and each must be one of the literal forms
above, with names read as JavaScript reads them (escapes included). Any other use, such as
`$(name)`, `$node[key]`, `const f = $` or `arguments[2]`, makes the script's references
unknowable from its text: the call is then given every upstream node. Reading too much is
safe (it costs what passing the items costs); the rules only have to catch every real use.

The scan is a few linear regular-expression passes (no pattern here can backtrack over more
than the text it consumes), and its result is kept per script text, so a node that runs
again pays a dictionary lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# A name that may be `$`, `$node` or `arguments`: one of them as written, or one spelled with
# `\u` escapes (`\u0024` is `$`), which is decoded before it is judged. Each alternative
# starts with its own character (the engine skips to the next `$`, `\` or `a` at C speed)
# and then looks back one character: it must start a word, not sit inside one or after `\`.
_WORD = re.compile(
    r"(?:\$(?<![\w$\\]\$)(?=(?:node)?(?![\w$\\])|[\w$]*\\u)"
    r"|\\(?<![\w$\\]\\)u(?:[0-9A-Fa-f]{4}|\{[0-9A-Fa-f]+\})"
    r"|a(?<![\w$\\]a)(?=rguments(?![\w$\\])|[\w$]*\\u))"
    r"(?:[\w$]|\\u[0-9A-Fa-f]{4}|\\u\{[0-9A-Fa-f]+\})*"
)
# Quoted text: '...', "..." or `...` without `${`. The alternatives inside never overlap, so
# an unclosed quote costs one pass to the end of the line (or of the text, for `).
_STRING = (
    r"""(?:"(?P<double>(?:[^"\\\n\r]|\\(?:\r\n|[\s\S]))*)\""""
    r"""|'(?P<single>(?:[^'\\\n\r]|\\(?:\r\n|[\s\S]))*)'"""
    r"""|`(?P<template>(?:[^`\\$]|\\[\s\S]|\$(?!\{))*)`)"""
)
_IDENTIFIER = r"(?P<member>(?:[\w$]|\\u[0-9A-Fa-f]{4}|\\u\{[0-9A-Fa-f]+\})+)"
# What may follow `$` and `$node` in a literal reference (`?.` included).
_CALL = re.compile(r"\s*(?:\?\.\s*)?\(\s*" + _STRING + r"\s*\)")
_INDEX = re.compile(r"\s*(?:\?\.\s*)?\[\s*" + _STRING + r"\s*\]")
_MEMBER = re.compile(r"\s*\??\.\s*" + _IDENTIFIER)
# What may follow `$` or `$node` without reaching a node: the end of text such as "$'",
# "US$" or `${x}` (in code, `$"` is a syntax error and `${` does not occur), a tagged
# template (`$` receives an array, which it refuses), a division or a bitwise or (`/^\d+$/`,
# `/a$|b/`: both turn `$` into a number), but not a comment (`$//` followed by a call on the
# next line) or a logical or (`$ || f`, which is `$`).
_INERT = re.compile(r"[\"'`{]|/(?![/*])|\|(?!\|)")

_SINGLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "0": "\0",
    "\r\n": "",
    "\n": "",
    "\r": "",
    "\u2028": "",
    "\u2029": "",
}
_ESCAPE = re.compile(
    r"\\(?:u\{(?P<point>[0-9A-Fa-f]+)\}|u(?P<unit>[0-9A-Fa-f]{4})|x(?P<byte>[0-9A-Fa-f]{2})"
    r"|(?P<other>\r\n|[\s\S]))"
)


@dataclass(frozen=True, slots=True)
class ScriptReferences:
    """The node names a script writes literally, and whether it reaches nodes otherwise."""

    names: frozenset[str]
    # A use of `$`, `$node` or `arguments` that is not a literal reference.
    unknowable: bool


def script_references(code: str) -> set[str]:
    """Names of the nodes the script refers to with a literal name (comments included: a
    reference in a comment is one a reader takes for real)."""
    return set(scan(code).names)


def offered_nodes(code: str, upstream: set[str] | frozenset[str]) -> set[str]:
    """The upstream nodes whose items a call passes in: those the script names literally,
    or all of them when it reaches nodes in a way its text does not tell."""
    references = scan(code)
    if references.unknowable:
        return set(upstream)
    return set(upstream.intersection(references.names))


@lru_cache(maxsize=64)
def scan(code: str) -> ScriptReferences:
    """Read the script's references (kept for the 64 most recent scripts)."""
    names: set[str] = set()
    for word in _WORD.finditer(code):
        spelled = word.group()
        name = _decoded(spelled) if "\\" in spelled else spelled
        if name == "$":
            reference = _CALL.match(code, word.end())
        elif name == "$node":
            reference = _INDEX.match(code, word.end()) or _MEMBER.match(code, word.end())
        elif name == "arguments":
            return ScriptReferences(frozenset(names), unknowable=True)
        else:
            continue
        if reference is not None:
            names.add(_name(reference))
        elif not _INERT.match(code, word.end()):
            return ScriptReferences(frozenset(names), unknowable=True)
    return ScriptReferences(frozenset(names), unknowable=False)


def _name(reference: re.Match[str]) -> str:
    # One named group matched: the quoted text or the member's name.
    kind = reference.lastgroup
    written = reference[kind] if kind is not None else ""
    if kind == "template":
        # A template's raw line breaks are read as \n.
        written = written.replace("\r\n", "\n").replace("\r", "\n")
    return _decoded(written)


def _decoded(text: str) -> str:
    """JavaScript's reading of a string literal's (or an identifier's) escapes."""
    if "\\" not in text:
        return text
    decoded = _ESCAPE.sub(_unescaped, text)
    # `\ud83d\ude00` is one character in JavaScript; a lone half stays as it is.
    return decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _unescaped(escape: re.Match[str]) -> str:
    digits = escape["point"] or escape["unit"] or escape["byte"]
    if digits is not None:
        point = int(digits, 16)
        # Past U+10FFFF is a syntax error in JavaScript: the script fails before it runs.
        return chr(point) if point <= 0x10FFFF else ""
    other = escape["other"]
    return _SINGLE_ESCAPES.get(other, other)
