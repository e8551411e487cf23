"""SQLite: sessions ended one at a time (a logout), kept until the cookie would expire."""

from __future__ import annotations

import time

import orjson

from store import rows
from store.base import User
from store.sqlite.connection import SQLiteConnection

# The user and its live revoked sessions in one statement: the session check's one read.
_USER_AND_REVOKED = (
    "SELECT users.*, (SELECT json_group_array(session_id) FROM revoked_sessions"
    " WHERE user_id = users.id AND expires_at > ?2) AS revoked_sessions"
    " FROM users WHERE id = ?1"
)


class SQLiteSessions(SQLiteConnection):
    """The session-revocation methods of ``SQLiteStore``."""

    async def revoke_session(self, user_id: str, session_id: str, *, expires_at: float) -> None:
        """Mark one session revoked until ``expires_at``; drop revocations that have expired."""
        await self._fetch(
            "INSERT INTO revoked_sessions (session_id, user_id, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (session_id) DO UPDATE"
            " SET expires_at = max(expires_at, excluded.expires_at)",
            (session_id, user_id, expires_at),
        )
        await self.purge_revoked_sessions(before=time.time())

    async def get_session_user(
        self, user_id: str, *, now: float
    ) -> tuple[User | None, frozenset[str]]:
        """Return the user and the ids of its revoked sessions still live at ``now``."""
        found = await self._fetch(_USER_AND_REVOKED, (user_id, now))
        if not found:
            return None, frozenset()
        return rows.user(found[0]), frozenset(orjson.loads(found[0]["revoked_sessions"]))

    async def purge_revoked_sessions(self, *, before: float) -> int:
        """Delete revocations of sessions that expired before ``before``; return how many."""
        gone = await self._fetch(
            "DELETE FROM revoked_sessions WHERE expires_at < ? RETURNING 1", (before,)
        )
        return len(gone)
