"""SQLite: the admin queries: listing, prefix search, per-source and per-day counts, readiness.

The SQL they share with PostgreSQL is built by ``store.listing``.
"""

from __future__ import annotations

from collections.abc import Sequence

from store import listing, rows
from store.base import User
from store.sqlite.connection import SQLiteConnection
from store.validation import normalise_identifier
from store.values import encodable

# NOCASE columns hold lower-case values, so their order is byte order, as Python's is.
_COLUMNS = listing.Columns(email="email", username="username", row="rowid", no_index="+")
_NOTE_CHUNK = 500  # rows per multi-row insert: 1500 parameters, well under SQLite's bound


class SQLiteAdmin(SQLiteConnection):
    """The admin-query methods of ``SQLiteStore``."""

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
        return [rows.user(r) for r in await self._fetch(sql, params)]

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
        if not norm or not encodable(prefix):
            return []
        branches = listing.search_queries(
            _COLUMNS, norm, prefix.strip(), source=source, since=since, after=after, limit=limit
        )
        found = [[rows.user(r) for r in await self._fetch(sql, p)] for sql, p in branches]
        return listing.merge_matches(listing.search_keys(norm, after, *found), norm, limit)

    async def count_by_source(self) -> dict[str, int]:
        """Return how many users each source (login, reset, signup, ...) brought in."""
        found = await self._fetch("SELECT source, COUNT(*) FROM users GROUP BY source", ())
        return {str(source): int(n) for source, n in found}

    async def migrated_per_day(self, *, since: float) -> dict[str, int]:
        """Return ``{UTC day: users created that day}`` for users created at or after ``since``."""
        found = await self._fetch(
            "SELECT CAST(created_at / 86400 AS INTEGER) AS d, COUNT(*) FROM users"
            " WHERE created_at >= ? GROUP BY d ORDER BY d",
            (since,),
        )
        return {listing.day_of(int(d)): int(n) for d, n in found}

    async def note_logins(self, day: str, entries: Sequence[tuple[str, bool]]) -> None:
        """Record that each ``(ident, migrated)`` logged in on ``day`` (later days win)."""
        items = list(listing.merge_logins(entries).items())
        for start in range(0, len(items), _NOTE_CHUNK):
            chunk = items[start : start + _NOTE_CHUNK]
            await self._fetch(
                # Only ? marks are formatted in; the values are parameters.
                "INSERT INTO login_activity (ident, last_day, migrated) VALUES "  # noqa: S608
                + ", ".join(["(?, ?, ?)"] * len(chunk))
                + listing.NOTE_LOGINS_UPDATE,
                [v for ident, migrated in chunk for v in (ident, day, int(migrated))],
            )

    async def login_readiness(self, *, since_day: str) -> tuple[int, int]:
        """Return ``(identifiers seen on or after since_day, how many of them were migrated)``."""
        found = await self._fetch(
            "SELECT COUNT(*), COALESCE(SUM(migrated), 0) FROM login_activity WHERE last_day >= ?",
            (since_day,),
        )
        return int(found[0][0]), int(found[0][1])

    async def prune_logins(self, *, before_day: str) -> int:
        """Forget identifiers last seen before ``before_day``; return how many were removed."""
        found = await self._fetch(
            "DELETE FROM login_activity WHERE last_day < ? RETURNING 1", (before_day,)
        )
        return len(found)
