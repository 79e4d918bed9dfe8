"""Checking and serializing node outputs: JSON objects per port, stored in full."""

from __future__ import annotations

from typing import Any

import orjson

from engine.json_depth import ITEM_DEPTH, MAX_JSON_DEPTH, JsonTooDeep, encode, nests_deeper
from engine.nodes.base import Item, NodeError, PortItems

_ORJSON_OPTIONS = (
    # Anything orjson would quietly turn into JSON but is not JSON data is refused instead.
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
PREVIEW_MAX_BYTES = 2048


def check_outputs(result: Any, ports: tuple[str, ...]) -> PortItems:
    """The behaviour's result as ports of items, or a NodeError saying what is wrong (the
    executor names the node)."""
    if not isinstance(result, dict):
        raise NodeError(
            f"returned a {type(result).__name__}, not outputs by port",
            error_type="NODE_OUTPUT_INVALID",
        )
    for port, items in result.items():
        if port not in ports:
            raise NodeError(
                f"produced items on unknown output {port!r}",
                error_type="NODE_OUTPUT_INVALID",
            )
        if not isinstance(items, list) or not all(type(item) is dict for item in items):
            raise NodeError(
                f"output {port!r} must be a list of JSON objects",
                error_type="NODE_OUTPUT_INVALID",
            )
    return result


def serialize_outputs(outputs: PortItems) -> bytes:
    """The outputs as JSON bytes; a value that is not JSON, or an item nested past the JSON
    nesting limit, is a NodeError (checked by the encoding itself: engine/json_depth.py)."""
    try:
        # The ports' object and lists hold the items: two levels above an item's own.
        return encode(outputs, ITEM_DEPTH + 2, _ORJSON_OPTIONS)
    except JsonTooDeep:
        port, index = next(
            (port, index)
            for port, items in outputs.items()
            for index, item in enumerate(items)
            if nests_deeper(item, ITEM_DEPTH)
        )
        raise NodeError(
            f"output {port!r} item {index} holds JSON nested more than {MAX_JSON_DEPTH} "
            "levels deep (the limit)",
            error_type="NODE_OUTPUT_TOO_DEEP",
            details={"port": port, "item": index, "maxDepth": MAX_JSON_DEPTH},
        ) from None
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise NodeError(
            f"returned a value that is not JSON: {not_json_reason(exc)}",
            error_type="NODE_OUTPUT_INVALID",
        ) from exc


# What orjson says when it refuses a value, in the user's words.
_NOT_JSON_REASONS = (
    (
        "Integer exceeds 64-bit range",
        "an integer too large to store (integers must fit in 64 "
        "bits; use a string or a decimal number for larger values)",
    ),
    (
        "surrogates not allowed",
        "text holding a lone UTF-16 surrogate (such as \\ud800), which is not valid Unicode",
    ),
    ("Dict key must be str", "an object key that is not text"),
)


def not_json_reason(exc: Exception) -> str:
    """Why orjson refused a value, as a user would say it."""
    message = str(exc)
    for marker, reason in _NOT_JSON_REASONS:
        if marker in message:
            return reason
    kind = message.rpartition("Type is not JSON serializable: ")[2]
    if kind != message:
        return f"a {kind.rpartition('.')[2]} value, which JSON has no type for"
    return "a value JSON cannot represent"


def deserialize_outputs(payload: bytes) -> PortItems:
    outputs: PortItems = orjson.loads(payload)
    return outputs


def preview(items: list[Item], payload_bytes: int | None = None) -> Any:
    """The first item if it is small, for live events; None otherwise.

    When the whole output is small, so is its first item, and nothing needs encoding.
    """
    if not items:
        return None
    if payload_bytes is not None and payload_bytes <= PREVIEW_MAX_BYTES:
        return items[0]
    encoded = orjson.dumps(items[0], option=_ORJSON_OPTIONS)
    return items[0] if len(encoded) <= PREVIEW_MAX_BYTES else None
