"""Bearer-token authentication with a short per-process cache."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from storage.accounts import Principal, hash_token, principal_for_token
from storage.db import Database, Sessions

BEARER = "bearer "
MAX_TOKEN_LENGTH = 512


def token_from_header(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None when malformed."""
    if not value or value[: len(BEARER)].lower() != BEARER:
        return None
    token = value[len(BEARER) :].strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def connection_token(params: object) -> str | None:
    """The token of a websocket's `connection_init` payload (`{"Authorization": "Bearer
    ..."}`), or None."""
    header = params.get("Authorization") if isinstance(params, dict) else None
    return token_from_header(header) if isinstance(header, str) else None


class Authenticator:
    """Turns tokens into principals, remembering each answer for `cache_s` seconds.

    The cache saves a database round trip on every request; a revoked token stops working
    at once in the process that revoked it, and within `cache_s` everywhere else.
    """

    def __init__(self, database: Database, cache_s: float = 5.0, max_entries: int = 10_000):
        self._database = database
        self._cache_s = cache_s
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._under_way: dict[str, tuple[int, asyncio.Task[Principal | None]]] = {}
        # How many times cached principals were forgotten (revocations, role changes).
        self._forgotten = 0

    async def authenticate(
        self, token: str | None, sessions: Sessions | None = None
    ) -> Principal | None:
        """The token's principal, or None. A lookup reads through `sessions` when given
        (subscriptions pass their rationed reads, so re-checks never take the pool that
        requests need), else through the database."""
        if token is None:
            return None
        key = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        # One lookup per token at a time: when a token's entry expires, every subscription
        # and request that holds it asks at once, and each would take a pooled connection.
        # A lookup that began before a revocation is not joined, and its answer not kept.
        under_way = self._under_way.get(key)
        if under_way is None or under_way[0] != self._forgotten:
            lookup = asyncio.create_task(
                self._look_up(token, key, self._forgotten, sessions or self._database)
            )
            self._under_way[key] = (self._forgotten, lookup)
            lookup.add_done_callback(lambda done: self._looked_up(key, done))
        else:
            lookup = under_way[1]
        return await asyncio.shield(lookup)

    def _looked_up(self, key: str, lookup: asyncio.Task[Principal | None]) -> None:
        under_way = self._under_way.get(key)
        if under_way is not None and under_way[1] is lookup:
            del self._under_way[key]
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every caller may have gone

    async def _look_up(
        self, token: str, key: str, forgotten: int, sessions: Sessions
    ) -> Principal | None:
        async with sessions.session() as session:
            principal = await principal_for_token(session, token)
        if forgotten != self._forgotten:
            return principal
        if principal is None:
            self._cache.pop(key, None)
            return None
        self._cache[key] = (time.monotonic() + self._cache_s, principal)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return principal

    def forget_user(self, user_id: str) -> None:
        """Drop cached principals of a user (after a revocation or a change of role)."""
        self._forgotten += 1
        for key in [k for k, (_, p) in self._cache.items() if p.user_id == user_id]:
            del self._cache[key]

    def forget_all(self) -> None:
        self._forgotten += 1
        self._cache.clear()
