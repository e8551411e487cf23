"""SQLite: multi-step logins waiting for their last step (store/base.py ``PendingLogin``)."""

from __future__ import annotations

from store.base import PendingLogin
from store.sqlite.connection import SQLiteConnection


class SQLitePending(SQLiteConnection):
    """The pending-login methods of ``SQLiteStore``."""

    async def pending_put(self, key_hash: str, pending: PendingLogin) -> None:
        """Keep a login that waits for its last step, under the hash of its cookie value."""
        await self._fetch(
            "INSERT OR REPLACE INTO pending_logins"
            " (key_hash, identifier, password_hash, route, expires_at) VALUES (?, ?, ?, ?, ?)",
            (key_hash, pending.identifier, pending.password_hash, pending.route,
             pending.expires_at),
        )  # fmt: skip

    async def pending_take(self, key_hash: str, *, now: float) -> PendingLogin | None:
        """Remove and return the unexpired pending login under ``key_hash`` (once only)."""
        found = await self._fetch(
            "DELETE FROM pending_logins WHERE key_hash = ? RETURNING *", (key_hash,)
        )
        if not found or found[0]["expires_at"] <= now:
            return None
        row = found[0]
        return PendingLogin(
            row["identifier"], row["password_hash"], row["route"], row["expires_at"]
        )

    async def pending_purge(self, *, now: float) -> int:
        """Delete the pending logins that expired (abandoned); return how many."""
        found = await self._fetch(
            "DELETE FROM pending_logins WHERE expires_at <= ? RETURNING key_hash", (now,)
        )
        return len(found)
