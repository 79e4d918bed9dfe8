"""The text fields of a workflow (name, description, tags) and how problems found while
reading a workflow are collected: shared by the API's inputs and by workflow documents
(export and import, `loom import`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.validation import Problem
from storage.types import storable

MAX_WORKFLOW_NAME = 255
MAX_DESCRIPTION = 10_000
MAX_NOTES = 10_000
MAX_TAGS = 50
MAX_TAG_LENGTH = 64


@dataclass(slots=True)
class Collected:
    """Problems found while reading inputs, before graph validation."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, message: str, field_path: str, node_id: str | None = None) -> None:
        self.problems.append(Problem(code=code, message=message, node_id=node_id, field=field_path))


def check_text(
    collected: Collected, value: str, field_path: str, *, max_length: int, required: bool
) -> None:
    """Names and other text: not empty (when required), bounded, and storable."""
    if required and not value.strip():
        collected.add("EMPTY_NAME", f"{field_path} must not be empty", field_path)
    if len(value) > max_length:
        collected.add(
            "NAME_TOO_LONG",
            f"{field_path} is {len(value)} characters long; the limit is {max_length}",
            field_path,
        )
    if "\x00" in value:
        collected.add("INVALID_CHARACTER", f"{field_path} contains a NUL character", field_path)
    elif not storable(value):
        collected.add(
            "INVALID_CHARACTER", f"{field_path} contains a lone surrogate (not Unicode)", field_path
        )


def checked_texts(collected: Collected, name: str, description: str, tags: list[str]) -> list[str]:
    """Check a workflow's name, description and tags; returns the tags as stored (stripped,
    each once)."""
    check_text(collected, name, "name", max_length=MAX_WORKFLOW_NAME, required=True)
    check_text(collected, description, "description", max_length=MAX_DESCRIPTION, required=False)
    tags = list(dict.fromkeys(tag.strip() for tag in tags))
    if len(tags) > MAX_TAGS:
        collected.add("TOO_MANY_TAGS", f"at most {MAX_TAGS} tags are allowed", "tags")
    for index, tag in enumerate(tags):
        check_text(collected, tag, f"tags[{index}]", max_length=MAX_TAG_LENGTH, required=True)
    return tags
