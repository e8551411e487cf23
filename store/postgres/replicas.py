"""PostgreSQL: what replicas and copies read and write wholesale: users page by page, users
upserted exactly as given, every setting, counters set to a value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from store import rows
from store.base import Identifiers, User
from store.postgres.connection import PostgresConnection
from store.values import norm, profile_json, username_columns

_UPSERT_USERS = (
    "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash, profile,"
    " source, created_at, last_login_at, login_count, blocked, session_epoch)"
    " SELECT u.id, u.legacy_id, u.email, u.username, u.username_key, u.password_hash,"
    " u.profile::jsonb, u.source, u.created_at, u.last_login_at, u.login_count, u.blocked,"
    " u.session_epoch"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::float8[], $10::float8[], $11::int[], $12::bool[], $13::int[])"
    " AS u(id, legacy_id, email, username, username_key, password_hash, profile, source,"
    " created_at, last_login_at, login_count, blocked, session_epoch)"
    " ON CONFLICT (id) DO UPDATE SET legacy_id = EXCLUDED.legacy_id, email = EXCLUDED.email,"
    " username = EXCLUDED.username, username_key = EXCLUDED.username_key,"
    " password_hash = EXCLUDED.password_hash,"
    " profile = EXCLUDED.profile, source = EXCLUDED.source, created_at = EXCLUDED.created_at,"
    " last_login_at = EXCLUDED.last_login_at, login_count = EXCLUDED.login_count,"
    " blocked = EXCLUDED.blocked, session_epoch = EXCLUDED.session_epoch"
)


class PostgresReplicas(PostgresConnection):
    """The replica and copy methods of ``PostgresStore``."""

    async def identifiers_after(self, after: tuple[float, str], limit: int) -> list[Identifiers]:
        """Return up to ``limit`` users' identifiers created after ``after`` = (created_at, id)."""
        sql = (
            "SELECT created_at, id, email, username_key FROM users"
            " WHERE (created_at, id) > ($1, $2) ORDER BY created_at, id LIMIT $3"
        )
        found = await self._run(lambda c: c.fetch(sql, after[0], after[1], limit))
        return [Identifiers(r[0], r[1], r[2], r[3]) for r in found]

    async def users_after(self, after_id: str, limit: int) -> list[User]:
        """Return up to ``limit`` whole users whose id sorts after ``after_id``, in id order."""
        sql = "SELECT * FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        return [rows.user(r) for r in await self._run(lambda c: c.fetch(sql, after_id, limit))]

    async def upsert_users(self, users: Sequence[User]) -> None:
        """Store ``users`` exactly as given (ids, hashes, times, epochs), replacing same ids."""
        # One statement over arrays: atomic, one round trip, and safe to retry whole.
        case = self.username_case
        columns = list(zip(*(_user_row(u, case) for u in users), strict=True)) if users else []
        if columns:
            await self._run(lambda c: c.execute(_UPSERT_USERS, *columns))

    async def all_settings(self) -> dict[str, str]:
        """Return every persisted setting."""
        found = await self._run(lambda c: c.fetch("SELECT key, value FROM settings"))
        return {r["key"]: r["value"] for r in found}

    async def set_counters(self, values: Mapping[tuple[str, str], int]) -> None:
        """Set each ``(day, name)`` counter to its value (set, not add: a copy is repeatable)."""
        if not values:
            return
        days, names, counts = zip(*((d, n, v) for (d, n), v in values.items()), strict=True)
        sql = (
            "INSERT INTO counters (day, name, value)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
            " ON CONFLICT (day, name) DO UPDATE SET value = EXCLUDED.value"
        )
        await self._run(lambda c: c.execute(sql, list(days), list(names), list(counts)))


def _user_row(user: User, case: str) -> tuple[Any, ...]:
    profile = profile_json(user.profile)
    return (
        user.id,
        user.legacy_id,
        norm(user.email),
        *username_columns(user.username, case),
        user.password_hash,
        profile,
        user.source,
        user.created_at,
        user.last_login_at,
        user.login_count,
        user.blocked,
        user.session_epoch,
    )
