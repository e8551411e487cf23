"""SQLite: persisted settings (such as the mode) and the per-day counters."""

from __future__ import annotations

from store.base import utc_day
from store.sqlite.connection import SQLiteConnection
from store.values import USERNAME_CASE_SETTING, check_username_case


class SQLiteSettings(SQLiteConnection):
    """The setting and counter methods of ``SQLiteStore``."""

    async def get_setting(self, key: str) -> str | None:
        """Return a persisted setting (such as ``mode``)."""
        rows = await self._fetch("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_setting(self, key: str, value: str) -> None:
        """Persist a setting so that every replica sees it."""
        await self._fetch(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def use_username_case(self, case: str) -> None:
        """Fold usernames by ``case`` from now on; recorded, and refused (``StoreUnavailable``)
        when users are stored under another rule."""
        stored = await self.get_setting(USERNAME_CASE_SETTING)
        found = await self._fetch("SELECT EXISTS (SELECT 1 FROM users)", ())
        if check_username_case(stored, case, has_users=bool(found[0][0])):
            await self.set_setting(USERNAME_CASE_SETTING, case)
        self.username_case = case

    async def incr(self, name: str, n: int = 1, *, day: str | None = None) -> None:
        """Add ``n`` to the counter ``name`` of ``day`` (default today, UTC)."""
        # One row per (day, name), summed in place: the table grows per day, not per event.
        await self._fetch(
            "INSERT INTO counters (day, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
            (day or utc_day(), name, n),
        )

    async def counters(self, *, since: str | None = None) -> dict[tuple[str, str], int]:
        """Return ``{(day, name): value}`` for days on or after ``since``."""
        rows = await self._fetch(
            "SELECT day, name, value FROM counters WHERE day >= ? ORDER BY day, name",
            (since or "",),
        )
        return {(str(day), str(name)): int(value) for day, name, value in rows}
