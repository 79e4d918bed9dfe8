"""Keyset pagination, newest first, on (created_at, id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_


def newest_first(
    query: Any, created_at: Any, row_id: Any, after: tuple[datetime, str] | None, limit: int
) -> Any:
    """`query` ordered newest first and cut to the page after the key `after`."""
    if after is not None:
        after_created_at, after_id = after
        query = query.where(
            or_(
                created_at < after_created_at,
                and_(created_at == after_created_at, row_id < after_id),
            )
        )
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit)
