"""Who logged in lately, migrated or not: the input of the cut-over readiness figure.

Each accepted login notes who logged in (a keyed hash, never the identifier itself) with
whether the user was migrated at that moment. Notes are kept in memory, one per identifier
and day, and flushed to the store's ``login_activity`` table every second, so the request
path pays a dictionary update rather than a database write.

A migrated user is noted under one name (the email, or the username when there is none), so
the readiness figure counts users: of those seen in the last N days, the share whose latest
login was already answered by authshim. A login the legacy app accepted but authshim could
not capture is noted under the identifier typed: the only name known for that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac

from proxy import log
from store.base import Store, User, utc_day
from store.errors import StoreError
from store.validation import identifier_key


def readiness_key(secret: str) -> bytes:
    """The hashing key, derived from the session secret that every replica shares."""
    return hashlib.sha256(b"authshim-login-activity\x00" + secret.encode()).digest()


def day_before(days: int, today: str | None = None) -> str:
    """The UTC day ``days`` days before ``today`` (default: today)."""
    start = dt.date.fromisoformat(today or utc_day())
    return (start - dt.timedelta(days=days)).isoformat()


class LoginActivity:
    """Notes accepted logins in memory; ``run`` flushes them to the store."""

    def __init__(
        self,
        key: bytes = b"",
        *,
        keep_days: int = 30,
        interval: float = 1.0,
        username_case: str = "lower",
    ) -> None:
        self._key = key
        self._case = username_case
        self._keep_days = keep_days
        self._interval = interval
        self._pending: dict[tuple[str, str], bool] = {}
        self._pruned_on: str | None = None

    def ident(self, identifier: str) -> str:
        """The stored form of an identifier: a keyed hash of its normalised form."""
        # SECURITY: the table must not become a list of the legacy site's users in clear.
        text = identifier_key(identifier, self._case).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()[:32]

    def note(self, identifier: str | None, user: User | None) -> None:
        """Count an accepted login: a migrated user once, else under the identifier typed."""
        if user is not None:
            # One name per user, whichever they typed: the figure counts users, and a user
            # noted under both email and username would count twice.
            name = user.email or user.username or f"id:{user.id}"
        elif identifier:
            name = identifier
        else:
            return
        key = (utc_day(), self.ident(name))
        self._pending[key] = self._pending.get(key, False) or user is not None

    async def flush(self, store: Store) -> None:
        """Write the pending notes; keep them for the next flush when the store fails."""
        pending, self._pending = self._pending, {}
        by_day: dict[str, list[tuple[str, bool]]] = {}
        for (day, ident), migrated in pending.items():
            by_day.setdefault(day, []).append((ident, migrated))
        for day, entries in sorted(by_day.items()):
            try:
                await store.note_logins(day, entries)
            except StoreError as exc:
                for ident, migrated in entries:
                    self._pending[(day, ident)] = self._pending.get((day, ident), False) or migrated
                log.event("login_activity.flush_failed", error=type(exc).__name__)
        await self._prune(store)

    async def _prune(self, store: Store) -> None:
        today = utc_day()
        if self._pruned_on == today:
            return
        try:
            removed = await store.prune_logins(before_day=day_before(self._keep_days, today))
        except StoreError as exc:
            log.event("login_activity.prune_failed", error=type(exc).__name__)
            return
        self._pruned_on = today
        if removed:
            log.event("login_activity.pruned", removed=removed)

    async def run(self, store: Store) -> None:
        """Flush every ``interval`` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self._interval)
                await self.flush(store)
        finally:
            with contextlib.suppress(StoreError):
                await asyncio.shield(self.flush(store))
