"""What distributed mode requires of every process (`loom serve` with Redis, `loom worker`).

Kept apart from `server.worker` so that an embedded `loom serve` does not import arq, Redis or
Alembic.
"""

from __future__ import annotations

from server.settings import Settings


class DistributedModeError(Exception):
    """Distributed mode is misconfigured (a missing shared setting)."""


def require_distributed_settings(settings: Settings) -> str:
    """The Redis URL; refuses distributed mode without a shared secret key."""
    if not settings.redis_url:
        raise DistributedModeError("LOOM_REDIS_URL is not set: workers need Redis")
    if settings.secret_key is None or not settings.secret_key.get_secret_value():
        raise DistributedModeError(
            "LOOM_SECRET_KEY is not set: in distributed mode every process must share it"
        )
    return settings.redis_url
