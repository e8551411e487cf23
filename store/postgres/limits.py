"""PostgreSQL: brute-force and rate-limit counters, applied with compare-and-swap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from store import limits
from store.limits import LimitAttempt, LimitDecision, LimitRule, LimitState
from store.postgres.connection import PostgresConnection

_ENSURE = (
    "INSERT INTO limits (count, window_start, blocked_until, version, key, subject)"
    " VALUES (0, 0, 0, 0, $1, $2) ON CONFLICT (key) DO NOTHING"
)
_LOCK = (
    "SELECT key, count, window_start, blocked_until, version FROM limits"
    " WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE"
)
_WRITE = (
    "UPDATE limits SET count = $1, window_start = $2, blocked_until = $3, version = $4"
    " WHERE key = $5"
)
# One attempt back per time a key is named (a batch may name one address several times).
_REFUND_ALL = (
    "UPDATE limits SET count = GREATEST(limits.count - r.n, 0), version = version + 1"
    " FROM (SELECT k, count(*) AS n FROM unnest($1::text[]) AS k GROUP BY k) AS r"
    " WHERE limits.key = r.k"
)


class _Refused(Exception):
    """Raised inside the transaction to roll it back; carries the refusal."""

    def __init__(self, decision: LimitDecision) -> None:
        super().__init__("refused")
        self.decision = decision


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

    async def limit_attempts(
        self, attempts: Sequence[LimitAttempt], *, now: float
    ) -> LimitDecision:
        """Count ``attempts`` together in one transaction: their rows are made if missing,
        locked in key order (no deadlock between replicas), advanced and written; a refusal
        rolls it all back."""
        ordered = sorted(attempts, key=lambda a: a.key)
        keys = [a.key for a in ordered]

        async def count(c: Any) -> LimitDecision:
            async with c.transaction():
                # An empty counter (never counted, window long over) advances like no counter.
                await c.executemany(_ENSURE, [(a.key, a.subject) for a in ordered])
                rows = await c.fetch(_LOCK, keys)
                states = {r[0]: LimitState(*r[1:]) for r in rows}
                writes, decision = limits.advance_together(attempts, states, now)
                if not decision.allowed:
                    raise _Refused(decision)  # rolls the empty rows back too
                await c.executemany(_WRITE, [
                    (new.count, new.window_start, new.blocked_until, new.version, a.key)
                    for a, new in writes
                ])  # fmt: skip
                return decision

        try:
            return await self._run(count)
        except _Refused as refused:
            return refused.decision

    async def limit_settle(
        self, *, clear: Sequence[str] = (), refund: Sequence[str] = ()
    ) -> None:
        """Delete ``clear`` and take one attempt back off each of ``refund``: one transaction."""

        async def settle(c: Any) -> None:
            async with c.transaction():
                await c.execute("DELETE FROM limits WHERE key = ANY($1::text[])", list(clear))
                await c.execute(_REFUND_ALL, list(refund))

        await self._run(settle)

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
