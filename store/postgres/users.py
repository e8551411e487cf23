"""PostgreSQL: the users themselves: look-ups, capture, logins, passwords, sessions, identity."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from store import rows
from store.base import NewUser, User, new_user_id
from store.errors import UserNotFound
from store.postgres.connection import PostgresConnection
from store.validation import normalise_identifier, username_key
from store.values import norm, profile_json, username_columns

_USER_BY_ID = "SELECT * FROM users WHERE id = $1"


class PostgresUsers(PostgresConnection):
    """The user methods of ``PostgresStore``."""

    async def find_user(self, identifier: str) -> User | None:
        """Return the user whose email (lower-case) or username key (``username_case``) is
        ``identifier``'s."""
        # What the unique indexes hold, so both are used (a BitmapOr). Email wins when one
        # user's email is another's username: the answer stays stable.
        sql = (
            "SELECT * FROM users WHERE lower(email) = $1 OR username_key = $2"
            " ORDER BY lower(email) = $1 DESC NULLS LAST LIMIT 1"
        )
        email, key = normalise_identifier(identifier), username_key(identifier, self.username_case)
        row = await self._run(lambda c: c.fetchrow(sql, email, key))
        return rows.user(row) if row is not None else None

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with this authshim id."""
        row = await self._run(lambda c: c.fetchrow(_USER_BY_ID, user_id))
        return rows.user(row) if row is not None else None

    async def insert_user(self, new: NewUser) -> User:
        """Store a new user; raise ``UserExists(field)`` when a unique field is taken."""
        user_id = new_user_id()  # chosen once, so a retried insert can recognise its own row
        args = (
            user_id,
            new.legacy_id,
            norm(new.email),
            *username_columns(new.username, self.username_case),
            new.password_hash,
            # Serialised before touching the database: a bad profile fails with nothing written.
            profile_json(new.profile),
            new.source,
            time.time(),
        )

        async def op(conn: Any) -> Any:
            row = await conn.fetchrow(
                "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash,"
                " profile, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)"
                " ON CONFLICT (id) DO NOTHING RETURNING *",
                *args,
            )
            if row is None:
                # Only on a retry: the first attempt committed but its connection died before
                # the answer arrived. The id is ours, so this is our user, not a duplicate.
                row = await conn.fetchrow(_USER_BY_ID, user_id)
            return row

        return rows.user(await self._run(op))

    async def update_identity(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        profile: dict[str, Any] | None = None,
    ) -> User:
        """Set a user's email and/or username (None leaves one as it is), and the profile."""
        sql = (
            "UPDATE users SET email = COALESCE($2, email), username = COALESCE($3, username),"
            " username_key = COALESCE($4, username_key), profile = COALESCE($5::jsonb, profile)"
            " WHERE id = $1 RETURNING *"
        )
        encoded = None if profile is None else profile_json(profile)
        new_email = norm(email) or None
        new_username, new_key = username_columns(username, self.username_case)
        row = await self._run(
            lambda c: c.fetchrow(sql, user_id, new_email, new_username, new_key, encoded)
        )
        if row is None:
            raise UserNotFound(f"no user with id {user_id!r}")
        return rows.user(row)

    async def update_profile(self, user_id: str, profile: dict[str, Any]) -> User:
        """Replace a user's stored profile."""
        return await self.update_identity(user_id, email=None, username=None, profile=profile)

    async def record_login(self, user_id: str, *, new_hash: str | None = None) -> None:
        """Count a successful login; replace the hash when ``new_hash`` is given (rehash)."""
        sql = (
            "UPDATE users SET login_count = login_count + 1, last_login_at = $2,"
            " password_hash = COALESCE($3, password_hash) WHERE id = $1"
        )
        await self._run(lambda c: c.execute(sql, user_id, time.time(), new_hash))

    async def record_logins(self, logins: Sequence[tuple[str, float]]) -> None:
        """Count successful logins, each ``(user id, when)``: one transaction for them all."""
        sql = (
            "UPDATE users SET login_count = login_count + 1,"
            " last_login_at = GREATEST(last_login_at, $2) WHERE id = $1"
        )
        await self._run(lambda c: c.executemany(sql, list(logins)))

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Replace the hash and revoke every session; return the new session epoch."""
        sql = (
            "UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1"
            " WHERE id = $1 RETURNING session_epoch"
        )
        return await self._epoch(sql, user_id, password_hash)

    async def revoke_sessions(self, user_id: str) -> int:
        """Bump the session epoch so that every issued session is refused; return it."""
        sql = (
            "UPDATE users SET session_epoch = session_epoch + 1"
            " WHERE id = $1 RETURNING session_epoch"
        )
        return await self._epoch(sql, user_id)

    async def set_blocked(self, user_id: str, blocked: bool) -> None:
        """Block or unblock a user."""
        sql = "UPDATE users SET blocked = $2 WHERE id = $1"
        await self._run(lambda c: c.execute(sql, user_id, blocked))

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user; return whether one was removed."""
        sql = "DELETE FROM users WHERE id = $1 RETURNING id"
        return await self._run(lambda c: c.fetchval(sql, user_id)) is not None

    async def count_users(self) -> int:
        """Return how many users are stored."""
        return int(await self._run(lambda c: c.fetchval("SELECT count(*) FROM users")))

    async def _epoch(self, sql: str, *args: Any) -> int:
        epoch = await self._run(lambda c: c.fetchval(sql, *args))
        if epoch is None:
            # The protocol returns an epoch, and there is none to return: say so loudly.
            raise UserNotFound(f"no user with id {args[0]!r}")
        return int(epoch)
