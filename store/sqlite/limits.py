"""SQLite: brute-force and rate-limit counters, applied with compare-and-swap."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from store import limits
from store.limits import LimitAttempt, LimitDecision, LimitRule, LimitState
from store.sqlite.connection import SQLiteConnection, transaction

_REFUND = "UPDATE limits SET count = max(count - 1, 0), version = version + 1 WHERE key = ?"
# A counter written under the write lock: a new row, or the row as advanced (subject kept).
_UPSERT = (
    "INSERT INTO limits (count, window_start, blocked_until, version, key, subject)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET count = excluded.count,"
    " window_start = excluded.window_start, blocked_until = excluded.blocked_until,"
    " version = excluded.version"
)


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

    async def limit_attempts(
        self, attempts: Sequence[LimitAttempt], *, now: float
    ) -> LimitDecision:
        """Count ``attempts`` together: read, advance and write under SQLite's write lock
        (``BEGIN IMMEDIATE``), so no compare-and-swap is needed; one hop to SQLite's thread."""
        keys = [a.key for a in attempts]
        marks = ", ".join("?" * len(keys))
        select = (
            "SELECT key, count, window_start, blocked_until, version"  # noqa: S608
            f" FROM limits WHERE key IN ({marks})"
        )

        def count(conn: sqlite3.Connection) -> LimitDecision:
            def work() -> LimitDecision:
                states = {r[0]: LimitState(*r[1:]) for r in conn.execute(select, keys)}
                writes, decision = limits.advance_together(attempts, states, now)
                conn.executemany(_UPSERT, [
                    (new.count, new.window_start, new.blocked_until, new.version, a.key, a.subject)
                    for a, new in writes
                ])  # fmt: skip
                return decision

            return transaction(conn, work, durable=False)

        return await self._in_thread(count)

    async def limit_settle(
        self, *, clear: Sequence[str] = (), refund: Sequence[str] = ()
    ) -> None:
        """Delete ``clear`` and take one attempt back off each of ``refund``: one transaction."""

        def settle(conn: sqlite3.Connection) -> None:
            def work() -> None:
                conn.executemany("DELETE FROM limits WHERE key = ?", [(k,) for k in clear])
                conn.executemany(_REFUND, [(k,) for k in refund])

            transaction(conn, work, durable=False)

        await self._in_thread(settle)

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
