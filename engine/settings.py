"""Workflow settings: their JSON Schema and validation (pure)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import retention

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

MAX_EXECUTION_TIMEOUT_S = 7 * 24 * 3600

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "timezone": {
            "type": "string",
            "title": "Time zone",
            "description": "IANA time zone for schedules and $now, e.g. Europe/Berlin.",
            "minLength": 1,
            "maxLength": 64,
        },
        "executionTimeoutSeconds": {
            "type": "number",
            "title": "Execution timeout",
            "description": "An execution running longer than this is cancelled.",
            "exclusiveMinimum": 0,
            "maximum": MAX_EXECUTION_TIMEOUT_S,
        },
        "maxConcurrentExecutions": {
            "type": "integer",
            "title": "Max concurrent executions",
            "description": "Further executions wait, queued, until one finishes.",
            "minimum": 1,
            "maximum": 10_000,
        },
        **retention.settings_schema(),
    },
}


@functools.cache
def _validator() -> Draft202012Validator:
    # jsonschema (9 MB, 50 ms) loads with the first settings to check, not at start.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(SETTINGS_SCHEMA)


def settings_problems(settings: Any) -> list[tuple[str, str]]:
    """Every problem of a settings value, as (field path, message) pairs."""
    if not isinstance(settings, dict):
        return [("settings", "settings must be a JSON object")]
    problems = []
    for error in sorted(_validator().iter_errors(settings), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(part) for part in error.absolute_path)
        problems.append((f"settings.{path}" if path else "settings", error.message))
    timezone = settings.get("timezone")
    if isinstance(timezone, str) and timezone:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(("settings.timezone", f"unknown time zone {timezone!r}"))
    return problems
