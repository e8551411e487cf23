"""PostgreSQL: the admin queries: listing, prefix search, per-source and per-day counts,
readiness. The SQL they share with SQLite is built by ``store.listing``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import listing, rows
from store.base import User
from store.postgres.connection import PostgresConnection
from store.validation import normalise_identifier

# The "C" collation: byte order, so that a prefix is one range of users_*_prefix (0003).
_COLUMNS = listing.Columns(
    email='(lower(email) COLLATE "C")', username='(lower(username) COLLATE "C")', row="id"
)
# The leading expression of users_username_split (0007), spelled as that index spells it.
_SPLIT = 'search_split(lower(email) COLLATE "C", lower(username) COLLATE "C")'


class PostgresAdmin(PostgresConnection):
    """The admin-query methods of ``PostgresStore``."""

    async def list_users(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[User]:
        """Return up to ``limit`` users in (created_at, id) order, after the cursor ``after``."""
        sql, params = listing.list_query(source=source, since=since, after=after, limit=limit)
        found = await self._run(lambda c: c.fetch(listing.numbered(sql), *params))
        return [rows.user(r) for r in found]

    async def search_users(
        self,
        prefix: str,
        *,
        source: str | None = None,
        since: float | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[tuple[str, User]]:
        """Return ``(key, user)`` whose email/username starts with ``prefix`` or legacy id is it."""
        norm = normalise_identifier(prefix)
        if not norm or "\x00" in prefix:  # PostgreSQL text cannot hold NUL: nobody matches
            return []
        legacy_id = prefix.strip()
        legacy, email, _ = listing.search_queries(
            _COLUMNS, norm, legacy_id, source=source, since=since, after=after, limit=limit
        )
        # Not the shared username branch: this one never steps over users listed by email.
        username = listing.split_username_query(
            _COLUMNS, _SPLIT, norm, legacy_id, source=source, since=since, after=after, limit=limit
        )
        branches = (legacy, email, username)

        async def op(conn: Any) -> list[list[User]]:
            return [
                [rows.user(r) for r in await conn.fetch(listing.numbered(sql), *params)]
                for sql, params in branches
            ]

        found = await self._run(op)
        return listing.merge_matches(listing.search_keys(norm, after, *found), norm, limit)

    async def count_by_source(self) -> dict[str, int]:
        """Return how many users each source (login, reset, signup, ...) brought in."""
        sql = "SELECT source, count(*) AS n FROM users GROUP BY source"
        return {r["source"]: int(r["n"]) for r in await self._run(lambda c: c.fetch(sql))}

    async def migrated_per_day(self, *, since: float) -> dict[str, int]:
        """Return ``{UTC day: users created that day}`` for users created at or after ``since``."""
        sql = (
            "SELECT floor(created_at / 86400)::bigint AS d, count(*) AS n FROM users"
            " WHERE created_at >= $1 GROUP BY d ORDER BY d"
        )
        found = await self._run(lambda c: c.fetch(sql, since))
        return {listing.day_of(int(r["d"])): int(r["n"]) for r in found}

    async def note_logins(self, day: str, entries: Sequence[tuple[str, bool]]) -> None:
        """Record that each ``(ident, migrated)`` logged in on ``day`` (later days win)."""
        merged = listing.merge_logins(entries)
        if not merged:
            return
        sql = (  # a constant: the values are parameters
            "INSERT INTO login_activity (ident, last_day, migrated)"  # noqa: S608
            " SELECT i, $2, m FROM unnest($1::text[], $3::boolean[]) AS t(i, m)"
            + listing.NOTE_LOGINS_UPDATE
        )
        idents, flags = list(merged), list(merged.values())
        await self._run(lambda c: c.execute(sql, idents, day, flags))

    async def login_readiness(self, *, since_day: str) -> tuple[int, int]:
        """Return ``(identifiers seen on or after since_day, how many of them were migrated)``."""
        sql = (
            "SELECT count(*) AS n, count(*) FILTER (WHERE migrated) AS m"
            " FROM login_activity WHERE last_day >= $1"
        )
        row = await self._run(lambda c: c.fetchrow(sql, since_day))
        return int(row["n"]), int(row["m"])

    async def prune_logins(self, *, before_day: str) -> int:
        """Forget identifiers last seen before ``before_day``; return how many were removed."""
        sql = "DELETE FROM login_activity WHERE last_day < $1"
        status = await self._run(lambda c: c.execute(sql, before_day))
        return int(str(status).rsplit(" ", 1)[-1])
