"""The examples of a Markdown page as runnable steps, and how a shown answer is checked.

The conventions (docs/api.md explains them to its readers too):

- A ```graphql block is a request. The first plain ```json block after it, before any other
  block, holds its variables.
- A ```sh block runs in a new bash, with TOKEN and the $NAMES known so far as environment
  variables; a ```python block runs with this Python.
- A ```json answer (or ```text answer) block shows what the request before it answers: the
  test checks the answer contains it (see `match`).
- `<!-- not-run: why -->` on the line before a block leaves it out (schema excerpts,
  fragments, code for other runtimes). Any other block is an error: a new example cannot
  go untested by accident.
- `$UPPER_CASE` names stand for values: an answer shows the name where its value first
  appears, and later requests use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

NOT_RUN = re.compile(r"^<!--\s*not-run\b(?::\s*(?P<why>.*?))?\s*-->\s*$", re.DOTALL)
PLACEHOLDER = re.compile(r"\$([A-Z][A-Z0-9_]*)\b")
# In an answer, a value that may be anything, or (as a list's last element) more elements.
ANY = "..."
RUNNABLE = ("graphql", "sh", "python")


class DocExampleError(Exception):
    """A block the test cannot run, or markers that do not fit together."""


@dataclass(frozen=True, slots=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    role: str  # "answer" or ""
    text: str


@dataclass(slots=True)
class Step:
    """One runnable example with its variables and the answer the page shows, if any."""

    block: Block
    variables: Block | None = None
    answer: Block | None = None

    @property
    def kind(self) -> str:
        return self.block.language


@dataclass(frozen=True, slots=True)
class Page:
    steps: list[Step]
    not_run: list[Block] = field(default_factory=list)


def _block(token: Token) -> Block:
    words = token.info.split()
    language = words[0] if words else ""
    role = " ".join(words[1:])
    if role not in ("", "answer"):
        raise DocExampleError(
            f"line {token.map[0] + 1 if token.map else '?'}: unknown "
            f"block role {role!r} (only 'answer')"
        )
    return Block(token.map[0] + 1 if token.map else 0, language, role, token.content)


def read_page(path: Path) -> Page:
    """Every block of a Markdown page, as steps to run (or skipped with a reason)."""
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    steps: list[Step] = []
    not_run: list[Block] = []
    skip_next = False
    # The step a following plain json block gives variables to (until another block comes).
    awaiting_variables: Step | None = None
    for token in tokens:
        if token.type == "html_block" and NOT_RUN.match(token.content.strip()):
            skip_next = True
            continue
        if token.type not in ("fence", "code_block"):
            if skip_next and token.type != "html_block":
                raise DocExampleError(
                    f"line {token.map[0] + 1 if token.map else '?'}: a not-run marker must be "
                    "on the line right before a fenced block"
                )
            continue
        if token.type == "code_block":
            raise DocExampleError(
                f"line {token.map[0] + 1 if token.map else '?'}: an indented code block; fence "
                "it with a language, or mark it <!-- not-run: why -->"
            )
        block = _block(token)
        if skip_next:
            skip_next = False
            not_run.append(block)
            awaiting_variables = None
            continue
        if block.role == "answer":
            if not steps or steps[-1].answer is not None:
                raise DocExampleError(f"line {block.line}: an answer with no request before it")
            if block.language not in ("json", "text"):
                raise DocExampleError(f"line {block.line}: answers are json or text")
            steps[-1].answer = block
            awaiting_variables = None
        elif block.language == "json" and awaiting_variables is not None:
            awaiting_variables.variables = block
            awaiting_variables = None
        elif block.language in RUNNABLE:
            steps.append(Step(block))
            awaiting_variables = steps[-1] if block.language == "graphql" else None
        else:
            raise DocExampleError(
                f"line {block.line}: a ```{block.language} block the test cannot run; make it "
                "runnable (graphql, sh, python; json right after graphql for its variables; "
                "json answer / text answer) or mark it <!-- not-run: why -->"
            )
    if skip_next:
        raise DocExampleError("a not-run marker at the end of the page marks no block")
    return Page(steps, not_run)


class AnswerMismatch(AssertionError):
    """The answer differs from what the page shows, at `where` (a JSON path)."""


def match(expected: Any, actual: Any, known: dict[str, str], where: str = "$") -> dict[str, str]:
    """Check that `actual` contains `expected`; returns the placeholders it newly binds.

    Objects match when every key shown matches (keys not shown are not checked); lists match
    element by element, with as many elements, unless the last one shown is "..." (then any
    number more may follow); "..." matches any value. A string "$NAME" matches the value
    NAME already stands for, or binds NAME to the actual value the first time.
    """
    bound: dict[str, str] = {}
    _match(expected, actual, known, bound, where)
    return bound


def _match(
    expected: Any, actual: Any, known: dict[str, str], bound: dict[str, str], where: str
) -> None:
    if expected == ANY:
        return
    if isinstance(expected, str) and (placeholder := PLACEHOLDER.fullmatch(expected)):
        name = placeholder.group(1)
        value = known.get(name, bound.get(name))
        if value is None:
            if not isinstance(actual, (str, int, float)) or isinstance(actual, bool):
                raise AnswerMismatch(
                    f"{where}: {expected} stands for a text or a number, got {actual!r}"
                )
            bound[name] = str(actual)
        elif str(actual) != value:
            raise AnswerMismatch(f"{where}: expected {expected} = {value!r}, got {actual!r}")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise AnswerMismatch(f"{where}: expected an object, got {actual!r}")
        for key, value in expected.items():
            if key not in actual:
                raise AnswerMismatch(f"{where}: no {key!r} in {sorted(actual)}")
            _match(value, actual[key], known, bound, f"{where}.{key}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list):
            raise AnswerMismatch(f"{where}: expected a list, got {actual!r}")
        more = bool(expected) and expected[-1] == ANY
        shown = expected[:-1] if more else expected
        if len(actual) < len(shown) or (not more and len(actual) != len(shown)):
            raise AnswerMismatch(
                f"{where}: expected {len(shown)}{' or more' if more else ''} elements, "
                f"got {len(actual)}: {actual!r}"
            )
        for index, value in enumerate(shown):
            _match(value, actual[index], known, bound, f"{where}[{index}]")
        return
    # JSON numbers: 20 and 20.0 are the same value; True is not 1.
    if type(expected) is not type(actual) and not (
        isinstance(expected, (int, float))
        and isinstance(actual, (int, float))
        and not isinstance(expected, bool)
        and not isinstance(actual, bool)
    ):
        raise AnswerMismatch(f"{where}: expected {expected!r}, got {actual!r}")
    if expected != actual:
        raise AnswerMismatch(f"{where}: expected {expected!r}, got {actual!r}")


def substitute(text: str, known: dict[str, str], line: int) -> str:
    """`text` with every $NAME replaced by its value (escaped for a JSON or Python string)."""

    def value(placeholder: re.Match[str]) -> str:
        name = placeholder.group(1)
        if name not in known:
            raise DocExampleError(
                f"line {line}: ${name} has no value yet: an earlier answer must show it"
            )
        return _escaped(known[name])

    return PLACEHOLDER.sub(value, text)


def _escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
