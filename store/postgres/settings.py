"""PostgreSQL: persisted settings, announced to every replica, and the per-day counters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from store.base import utc_day
from store.postgres.connection import PostgresConnection
from store.values import USERNAME_CASE_SETTING, check_username_case


class PostgresSettings(PostgresConnection):
    """The setting and counter methods of ``PostgresStore``."""

    async def get_setting(self, key: str) -> str | None:
        """Return a persisted setting (such as ``mode``)."""
        sql = "SELECT value FROM settings WHERE key = $1"
        value = await self._run(lambda c: c.fetchval(sql, key))
        return str(value) if value is not None else None

    async def use_username_case(self, case: str) -> None:
        """Fold usernames by ``case`` from now on; recorded, and refused (``StoreUnavailable``)
        when users are stored under another rule."""
        stored = await self.get_setting(USERNAME_CASE_SETTING)
        has_users = await self._run(lambda c: c.fetchval("SELECT EXISTS (SELECT 1 FROM users)"))
        if check_username_case(stored, case, has_users=bool(has_users)):
            await self.set_setting(USERNAME_CASE_SETTING, case)
        self.username_case = case

    async def set_setting(self, key: str, value: str) -> None:
        """Persist a setting and notify every replica's ``listen_settings`` at commit."""
        payload = orjson.dumps([key, value]).decode()

        async def op(conn: Any) -> None:
            # One transaction: a listener never hears of a value that was not stored, and
            # a stored value is always announced.
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    key,
                    value,
                )
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

        await self._run(op)

    async def listen_settings(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(key, value)`` whenever any replica sets a setting.

        After the listening connection drops and comes back, every stored setting is
        replayed to the callbacks, since notifications sent meanwhile are lost.
        """
        await self._listener.add(callback)

    async def incr(self, name: str, n: int = 1, *, day: str | None = None) -> None:
        """Add ``n`` to the counter ``name`` of ``day`` (default today, UTC)."""
        sql = (
            "INSERT INTO counters (day, name, value) VALUES ($1, $2, $3)"
            " ON CONFLICT (day, name) DO UPDATE SET value = counters.value + EXCLUDED.value"
        )
        await self._run(lambda c: c.execute(sql, day or utc_day(), name, n))

    async def counters(self, *, since: str | None = None) -> dict[tuple[str, str], int]:
        """Return ``{(day, name): value}`` for days on or after ``since``."""
        sql = "SELECT day, name, value FROM counters WHERE day >= $1"
        found = await self._run(lambda c: c.fetch(sql, since or ""))
        return {(r["day"], r["name"]): int(r["value"]) for r in found}
