"""The truncation marker: what stands in for a JSON value too large to return or keep whole.

A value that does not fit in the room left (an item of a page capped by `maxBytes`, an
execution input, the details of an error) is replaced by

    {"$truncated": true, "bytes": N, "preview": "..."}

where `N` is the size of the value as compact JSON, in UTF-8 bytes, and `preview` is the
start of that JSON text, as many whole characters as fit, so that the marker itself takes at
most the room. docs/api.md documents it for clients.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from engine.events import ErrorInfo

TRUNCATED_KEY = "$truncated"
# The room a marker needs with an empty preview and a 20-digit size, rounded up: less room
# than this cannot hold any marker.
MIN_MARKER_BYTES = 64


def marker(json_prefix: bytes, total_bytes: int, room_bytes: int) -> dict[str, Any]:
    """The marker for a value of `total_bytes` whose JSON text starts with `json_prefix`
    (at least `room_bytes` of it, when the value is that long), encoded in at most
    `room_bytes` (or `MIN_MARKER_BYTES`, when the room is smaller)."""
    empty = {TRUNCATED_KEY: True, "bytes": total_bytes, "preview": ""}
    budget = room_bytes - len(orjson.dumps(empty))
    if budget <= 0:
        return empty
    # A cut inside a multi-byte character leaves a partial one at the end: dropped.
    preview = json_prefix[:budget].decode("utf-8", "ignore")
    while True:
        found = {TRUNCATED_KEY: True, "bytes": total_bytes, "preview": preview}
        excess = len(orjson.dumps(found)) - room_bytes
        if excess <= 0:
            return found
        # Escapes (\" \\ \u0001) make the preview longer as JSON than as text; each
        # character cut saves at least one byte, so this ends within a few rounds.
        preview = preview[: len(preview) - excess]


def truncated(value: Any, room_bytes: int) -> Any:
    """`value` if its JSON fits in `room_bytes`, else its marker."""
    encoded = _json(value)
    if len(encoded) <= room_bytes:
        return value
    return marker(encoded[:room_bytes], len(encoded), room_bytes)


# Errors are stored with their node run, their event and the execution, sent to every
# subscriber, and become the error item of a node whose onError routes it: each is kept small
# whatever raised it (a message quoting a huge value, details holding a response body).
MAX_ERROR_MESSAGE_CHARS = 2000
MAX_ERROR_DETAILS_BYTES = 8 * 1024


def bounded_error(error: ErrorInfo) -> ErrorInfo:
    """The error with its message cut to `MAX_ERROR_MESSAGE_CHARS` and its details to
    `MAX_ERROR_DETAILS_BYTES` of JSON (large values replaced by markers)."""
    message = error.message
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        cut = len(message) - MAX_ERROR_MESSAGE_CHARS
        message = f"{message[:MAX_ERROR_MESSAGE_CHARS]}... ({cut} more characters)"
    details = error.details
    if _too_long(details):
        room = max(MAX_ERROR_DETAILS_BYTES // (2 * len(details)), MIN_MARKER_BYTES)
        details = {key: truncated(value, room) for key, value in details.items()}
        if _too_long(details):  # many keys, or long ones
            encoded = _json(error.details)
            room = MAX_ERROR_DETAILS_BYTES
            details = marker(encoded[:room], len(encoded), room)
    if message is error.message and details is error.details:
        return error
    return replace(error, message=message, details=details)


def _too_long(details: dict[str, Any]) -> bool:
    try:
        return len(_json(details)) > MAX_ERROR_DETAILS_BYTES
    except orjson.JSONEncodeError:  # nested too deep to encode: stored as it is, if at all
        return False


def _json(value: Any) -> bytes:
    # Details come from node types' code: what is not JSON is measured as its text.
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
