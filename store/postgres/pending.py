"""PostgreSQL: multi-step logins waiting for their last step (store/base.py ``PendingLogin``)."""

from __future__ import annotations

from store.base import PendingLogin
from store.postgres.connection import PostgresConnection


class PostgresPending(PostgresConnection):
    """The pending-login methods of ``PostgresStore``."""

    async def pending_put(self, key_hash: str, pending: PendingLogin) -> None:
        """Keep a login that waits for its last step, under the hash of its cookie value."""
        sql = (
            "INSERT INTO pending_logins (key_hash, identifier, password_hash, route, expires_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_hash) DO UPDATE SET"
            " identifier = $2, password_hash = $3, route = $4, expires_at = $5"
        )
        await self._run(lambda c: c.execute(
            sql, key_hash, pending.identifier, pending.password_hash, pending.route,
            pending.expires_at,
        ))  # fmt: skip

    async def pending_take(self, key_hash: str, *, now: float) -> PendingLogin | None:
        """Remove and return the unexpired pending login under ``key_hash`` (once only)."""
        sql = "DELETE FROM pending_logins WHERE key_hash = $1 RETURNING *"
        row = await self._run(lambda c: c.fetchrow(sql, key_hash))
        if row is None or row["expires_at"] <= now:
            return None
        return PendingLogin(
            row["identifier"], row["password_hash"], row["route"], row["expires_at"]
        )

    async def pending_purge(self, *, now: float) -> int:
        """Delete the pending logins that expired (abandoned); return how many."""
        sql = "DELETE FROM pending_logins WHERE expires_at <= $1"
        status = await self._run(lambda c: c.execute(sql, now))
        return int(status.split()[-1])
