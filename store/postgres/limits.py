"""PostgreSQL: brute-force and rate-limit counters, applied with compare-and-swap."""

from __future__ import annotations

from collections.abc import Sequence

from store import limits
from store.limits import LimitDecision, LimitRule, LimitState
from store.postgres.connection import PostgresConnection


class PostgresLimits(PostgresConnection):
    """The limit-counter methods of ``PostgresStore``."""

    async def limit_attempt(
        self, key: str, rule: LimitRule, *, now: float, subject: str | None = None
    ) -> LimitDecision:
        """Count one attempt on ``key`` under ``rule`` (compare-and-swap on ``version``)."""
        select = "SELECT count, window_start, blocked_until, version FROM limits WHERE key = $1"
        insert = (
            "INSERT INTO limits (count, window_start, blocked_until, version, key, subject)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING RETURNING key"
        )
        update = (
            "UPDATE limits SET count = $1, window_start = $2, blocked_until = $3, version = $4"
            " WHERE key = $5 AND version = $6 RETURNING key"
        )

        async def load() -> LimitState | None:
            row = await self._run(lambda c: c.fetchrow(select, key))
            return LimitState(*row) if row is not None else None

        async def write(old: LimitState | None, new: LimitState) -> bool:
            fields = (new.count, new.window_start, new.blocked_until, new.version, key)
            if old is None:
                done = await self._run(lambda c: c.fetchval(insert, *fields, subject))
            else:
                done = await self._run(lambda c: c.fetchval(update, *fields, old.version))
            return done is not None

        return await limits.apply(load, write, rule, now)

    async def limit_refund(self, key: str) -> None:
        """Take one attempt back off ``key`` (it turned out to succeed); a block stays."""
        sql = (
            "UPDATE limits SET count = GREATEST(count - 1, 0), version = version + 1 WHERE key = $1"
        )
        await self._run(lambda c: c.execute(sql, key))

    async def limit_clear(self, keys: Sequence[str] = (), *, subject: str | None = None) -> int:
        """Delete the counters ``keys`` and every counter of ``subject``; return how many."""
        sql = "DELETE FROM limits WHERE key = ANY($1::text[]) OR subject = $2"
        status = await self._run(lambda c: c.execute(sql, list(keys), subject))
        return int(status.split()[-1])

    async def limit_purge(self, before: float) -> int:
        """Delete counters whose window began and whose block ended before ``before``."""
        sql = "DELETE FROM limits WHERE window_start < $1 AND blocked_until < $1"
        status = await self._run(lambda c: c.execute(sql, before))
        return int(status.split()[-1])
