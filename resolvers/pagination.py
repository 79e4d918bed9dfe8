"""Opaque Relay cursors over (created_at, id) keys, and page-size checks."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from engine import json_depth
from resolvers.errors import BAD_USER_INPUT, INVALID_CURSOR, RequestError
from schema.types import PageInfo
from storage.types import storable

DEFAULT_PAGE_SIZE = 20


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The key a cursor stands for; a cursor Loom did not make is a request error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        # A key is a flat pair: anything nested is refused before it costs anything.
        created_at, row_id = json_depth.loads(base64.urlsafe_b64decode(padded.encode()), limit=1)
        parsed = datetime.fromisoformat(created_at)
        if not isinstance(row_id, str) or not storable(row_id) or parsed.tzinfo is None:
            raise ValueError("malformed key")
    except (ValueError, TypeError, binascii.Error, UnicodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"invalid cursor {cursor[:64]!r}", INVALID_CURSOR) from exc
    return parsed, row_id


def page_size(first: int | None, maximum: int) -> int:
    if first is None:
        return min(DEFAULT_PAGE_SIZE, maximum)
    if first < 0 or first > maximum:
        raise RequestError(
            f"`first` must be between 0 and {maximum}, got {first}", BAD_USER_INPUT, field="first"
        )
    return first


def page_info(rows_fetched: int, limit: int, cursors: list[str], after: object) -> PageInfo:
    """Relay page info for a page fetched with `limit + 1` rows (the extra one says more
    follow)."""
    return PageInfo(
        has_next_page=rows_fetched > limit,
        has_previous_page=after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )
