"""SQLite: brute-force and rate-limit counters, applied with compare-and-swap."""

from __future__ import annotations

from collections.abc import Sequence

from store import limits
from store.limits import LimitDecision, LimitRule, LimitState
from store.sqlite.connection import SQLiteConnection


class SQLiteLimits(SQLiteConnection):
    """The limit-counter methods of ``SQLiteStore``."""

    async def limit_attempt(
        self, key: str, rule: LimitRule, *, now: float, subject: str | None = None
    ) -> LimitDecision:
        """Count one attempt on ``key`` under ``rule`` (compare-and-swap on ``version``)."""

        async def load() -> LimitState | None:
            rows = await self._fetch(
                "SELECT count, window_start, blocked_until, version FROM limits WHERE key = ?",
                (key,),
            )
            return LimitState(*rows[0]) if rows else None

        async def write(old: LimitState | None, new: LimitState) -> bool:
            fields = (new.count, new.window_start, new.blocked_until, new.version)
            if old is None:
                rows = await self._fetch(
                    "INSERT INTO limits (count, window_start, blocked_until, version, key,"
                    " subject) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
                    " RETURNING key",
                    (*fields, key, subject),
                )
            else:
                rows = await self._fetch(
                    "UPDATE limits SET count = ?, window_start = ?, blocked_until = ?,"
                    " version = ? WHERE key = ? AND version = ? RETURNING key",
                    (*fields, key, old.version),
                )
            return bool(rows)

        return await limits.apply(load, write, rule, now)

    async def limit_refund(self, key: str) -> None:
        """Take one attempt back off ``key`` (it turned out to succeed); a block stays."""
        await self._fetch(
            "UPDATE limits SET count = max(count - 1, 0), version = version + 1 WHERE key = ?",
            (key,),
        )

    async def limit_clear(self, keys: Sequence[str] = (), *, subject: str | None = None) -> int:
        """Delete the counters ``keys`` and every counter of ``subject``; return how many."""
        marks = ", ".join("?" * len(keys))
        rows = await self._fetch(
            f"DELETE FROM limits WHERE key IN ({marks}) OR subject = ? RETURNING key",  # noqa: S608
            (*keys, subject),
        )
        return len(rows)

    async def limit_purge(self, before: float) -> int:
        """Delete counters whose window began and whose block ended before ``before``."""
        rows = await self._fetch(
            "DELETE FROM limits WHERE window_start < ?1 AND blocked_until < ?1 RETURNING key",
            (before,),
        )
        return len(rows)
