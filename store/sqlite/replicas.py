"""SQLite: what replicas and copies read and write wholesale: users page by page, users
upserted exactly as given, every setting, counters set to a value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from store import rows
from store.base import Identifiers, User
from store.sqlite.connection import SQLiteConnection
from store.values import norm, profile_json, username_columns

# 13 parameters a row: 500 rows stay well under SQLite's 32766 bound on parameters.
_UPSERT_CHUNK = 500
_USER_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_USERS = (
    "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash, profile,"
    " source, created_at, last_login_at, login_count, blocked, session_epoch) VALUES {values}"
    " ON CONFLICT (id) DO UPDATE SET legacy_id = excluded.legacy_id, email = excluded.email,"
    " username = excluded.username, username_key = excluded.username_key,"
    " password_hash = excluded.password_hash,"
    " profile = excluded.profile, source = excluded.source, created_at = excluded.created_at,"
    " last_login_at = excluded.last_login_at, login_count = excluded.login_count,"
    " blocked = excluded.blocked, session_epoch = excluded.session_epoch"
)
_SET_COUNTERS = (
    "INSERT INTO counters (day, name, value) VALUES {values}"
    " ON CONFLICT (day, name) DO UPDATE SET value = excluded.value"
)


class SQLiteReplicas(SQLiteConnection):
    """The replica and copy methods of ``SQLiteStore``."""

    async def identifiers_after(self, after: tuple[float, str], limit: int) -> list[Identifiers]:
        """Return up to ``limit`` users' identifiers created after ``after`` = (created_at, id)."""
        found = await self._fetch(
            "SELECT created_at, id, email, username_key FROM users WHERE (created_at, id) > (?, ?)"
            " ORDER BY created_at, id LIMIT ?",
            (after[0], after[1], limit),
        )
        return [Identifiers(float(r[0]), r[1], r[2], r[3]) for r in found]

    async def users_after(self, after_id: str, limit: int) -> list[User]:
        """Return up to ``limit`` whole users whose id sorts after ``after_id``, in id order."""
        found = await self._fetch(
            "SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [rows.user(r) for r in found]

    async def upsert_users(self, users: Sequence[User]) -> None:
        """Store ``users`` exactly as given (ids, hashes, times, epochs), replacing same ids."""
        # One multi-row statement per chunk: atomic without a transaction that another task's
        # statement could land in (see the package docstring).
        for start in range(0, len(users), _UPSERT_CHUNK):
            chunk = users[start : start + _UPSERT_CHUNK]
            params = [v for user in chunk for v in _user_row(user, self.username_case)]
            await self._fetch(_rows_sql(_UPSERT_USERS, _USER_ROW, len(chunk)), params)

    async def all_settings(self) -> dict[str, str]:
        """Return every persisted setting."""
        found = await self._fetch("SELECT key, value FROM settings", ())
        return {str(key): str(value) for key, value in found}

    async def set_counters(self, values: Mapping[tuple[str, str], int]) -> None:
        """Set each ``(day, name)`` counter to its value (set, not add: a copy is repeatable)."""
        items = sorted(values.items())
        for start in range(0, len(items), _UPSERT_CHUNK):
            chunk = items[start : start + _UPSERT_CHUNK]
            params = [v for (day, name), n in chunk for v in (day, name, n)]
            await self._fetch(_rows_sql(_SET_COUNTERS, "(?, ?, ?)", len(chunk)), params)


def _rows_sql(template: str, row: str, n: int) -> str:
    """``template`` with ``n`` placeholder rows: only ``?`` marks are formatted in, no values."""
    return template.format(values=", ".join([row] * n))


def _user_row(user: User, case: str) -> tuple[Any, ...]:
    return (
        user.id,
        user.legacy_id,
        norm(user.email),
        *username_columns(user.username, case),
        user.password_hash,
        profile_json(user.profile),
        user.source,
        user.created_at,
        user.last_login_at,
        user.login_count,
        int(user.blocked),
        user.session_epoch,
    )
