"""SQLite: the users themselves: look-ups, capture, logins, passwords, sessions, identity."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from store import rows
from store.base import NewUser, User, new_user_id
from store.errors import UserNotFound
from store.sqlite.connection import SQLiteConnection, transaction
from store.validation import normalise_identifier, username_key
from store.values import encodable, norm, profile_json, username_columns

_COUNT_LOGIN = (
    "UPDATE users SET login_count = login_count + 1,"
    " last_login_at = max(coalesce(last_login_at, 0), ?) WHERE id = ?"
)


class SQLiteUsers(SQLiteConnection):
    """The user methods of ``SQLiteStore``."""

    async def find_user(self, identifier: str) -> User | None:
        """Return the user whose email (lower-case) or username key (``username_case``) is
        ``identifier``'s."""
        email, key = normalise_identifier(identifier), username_key(identifier, self.username_case)
        if not email or not encodable(email) or not encodable(key):
            return None  # nobody is stored under an empty or unstorable (non-UTF-8) name
        # Email wins when one user's email is another's username: the answer stays stable.
        found = await self._fetch(
            "SELECT * FROM users WHERE email = ?1 OR username_key = ?2"
            " ORDER BY email = ?1 DESC LIMIT 1",
            (email, key),
        )
        return rows.user(found[0]) if found else None

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with this authshim id."""
        found = await self._fetch("SELECT * FROM users WHERE id = ?", (user_id,))
        return rows.user(found[0]) if found else None

    async def insert_user(self, new: NewUser) -> User:
        """Store a new user; raise ``UserExists(field)`` when a unique field is taken."""
        profile = profile_json(new.profile)
        found = await self._fetch(
            "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash,"
            " profile, source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                new_user_id(),
                new.legacy_id,
                norm(new.email),
                *username_columns(new.username, self.username_case),
                new.password_hash,
                profile,
                new.source,
                time.time(),
            ),
        )
        return rows.user(found[0])

    async def update_identity(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        profile: dict[str, Any] | None = None,
    ) -> User:
        """Set a user's email and/or username (None leaves one as it is), and the profile."""
        found = await self._fetch(
            "UPDATE users SET email = COALESCE(?, email), username = COALESCE(?, username),"
            " username_key = COALESCE(?, username_key), profile = COALESCE(?, profile)"
            " WHERE id = ? RETURNING *",
            (
                norm(email),
                *username_columns(username, self.username_case),
                None if profile is None else profile_json(profile),
                user_id,
            ),
        )
        if not found:
            raise UserNotFound(f"no user with id {user_id!r}")
        return rows.user(found[0])

    async def update_profile(self, user_id: str, profile: dict[str, Any]) -> User:
        """Replace a user's stored profile."""
        return await self.update_identity(user_id, email=None, username=None, profile=profile)

    async def record_login(self, user_id: str, *, new_hash: str | None = None) -> None:
        """Count a successful login; replace the hash when ``new_hash`` is given (rehash)."""
        await self._fetch(
            "UPDATE users SET login_count = login_count + 1, last_login_at = ?,"
            " password_hash = COALESCE(?, password_hash) WHERE id = ?",
            (time.time(), new_hash, user_id),
        )

    async def record_logins(self, logins: Sequence[tuple[str, float]]) -> None:
        """Count successful logins, each ``(user id, when)``: one transaction for them all."""
        args = [(at, user_id) for user_id, at in logins]

        def record(conn: sqlite3.Connection) -> None:
            transaction(conn, lambda: conn.executemany(_COUNT_LOGIN, args), durable=False)

        await self._in_thread(record)

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Replace the hash and revoke every session; return the new session epoch."""
        # One statement: a new password without the revocation can never be observed.
        return await self._bump_epoch(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1"
            " WHERE id = ? RETURNING session_epoch",
            (password_hash, user_id),
            user_id,
        )

    async def revoke_sessions(self, user_id: str) -> int:
        """Bump the session epoch so that every issued session is refused; return it."""
        return await self._bump_epoch(
            "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?"
            " RETURNING session_epoch",
            (user_id,),
            user_id,
        )

    async def set_blocked(self, user_id: str, blocked: bool) -> None:
        """Block or unblock a user."""
        await self._fetch("UPDATE users SET blocked = ? WHERE id = ?", (int(blocked), user_id))

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user; return whether one was removed."""
        found = await self._fetch("DELETE FROM users WHERE id = ? RETURNING id", (user_id,))
        return bool(found)

    async def count_users(self) -> int:
        """Return how many users are stored."""
        found = await self._fetch("SELECT COUNT(*) FROM users", ())
        return int(found[0][0])

    async def _bump_epoch(self, sql: str, params: Sequence[Any], user_id: str) -> int:
        found = await self._fetch(sql, params)
        if not found:
            # The protocol returns an epoch, and there is none to return: say so loudly.
            raise UserNotFound(f"no user with id {user_id!r}")
        return int(found[0][0])
