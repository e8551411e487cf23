"""PostgreSQL: sessions ended one at a time (a logout), kept until the cookie would expire."""

from __future__ import annotations

import time
from typing import Any

from store import rows
from store.base import User
from store.postgres.connection import PostgresConnection

# The user and its live revoked sessions in one statement: the session check's one round trip.
_USER_AND_REVOKED = (
    "SELECT users.*, ARRAY(SELECT session_id FROM revoked_sessions"
    " WHERE user_id = users.id AND expires_at > $2) AS revoked_sessions"
    " FROM users WHERE id = $1"
)


class PostgresSessions(PostgresConnection):
    """The session-revocation methods of ``PostgresStore``."""

    async def revoke_session(self, user_id: str, session_id: str, *, expires_at: float) -> None:
        """Mark one session revoked until ``expires_at``; drop revocations that have expired."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO revoked_sessions (session_id, user_id, expires_at)"
                " VALUES ($1, $2, $3) ON CONFLICT (session_id) DO UPDATE"
                " SET expires_at = GREATEST(revoked_sessions.expires_at, excluded.expires_at)",
                session_id,
                user_id,
                expires_at,
            )
            await conn.execute("DELETE FROM revoked_sessions WHERE expires_at < $1", time.time())

        await self._run(op)

    async def get_session_user(
        self, user_id: str, *, now: float
    ) -> tuple[User | None, frozenset[str]]:
        """Return the user and the ids of its revoked sessions still live at ``now``."""
        row = await self._run(lambda c: c.fetchrow(_USER_AND_REVOKED, user_id, now))
        if row is None:
            return None, frozenset()
        return rows.user(row), frozenset(row["revoked_sessions"])

    async def purge_revoked_sessions(self, *, before: float) -> int:
        """Delete revocations of sessions that expired before ``before``; return how many."""
        result = await self._run(
            lambda c: c.execute("DELETE FROM revoked_sessions WHERE expires_at < $1", before)
        )
        return int(str(result).rsplit(" ", 1)[-1])
