"""PostgreSQL: reset tokens (only their hashes) and the outbox of mails to send."""

from __future__ import annotations

import time
from typing import Any

import orjson

from store import rows
from store.base import NewMail, NewResetToken, OutboxMail, ResetToken, new_user_id
from store.postgres.connection import PostgresConnection
from store.validation import normalise_identifier
from store.values import profile_json

_TOKEN_BY_HASH = "SELECT * FROM reset_tokens WHERE token_hash = $1"


class PostgresReset(PostgresConnection):
    """The reset-token and outbox methods of ``PostgresStore``."""

    async def insert_reset_token(self, token: NewResetToken) -> ResetToken:
        """Store a reset token (only its hash)."""
        args = (
            token.token_hash,
            token.user_id,
            normalise_identifier(token.email),
            token.legacy_id,
            None if token.profile is None else profile_json(token.profile),
            token.epoch,
            time.time(),
            token.expires_at,
        )

        async def op(conn: Any) -> Any:
            # ON CONFLICT: a retry after a lost connection finds the row its first try wrote.
            await conn.execute(
                "INSERT INTO reset_tokens (token_hash, user_id, email, legacy_id, profile, epoch,"
                " created_at, expires_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)"
                " ON CONFLICT (token_hash) DO NOTHING",
                *args,
            )
            return await conn.fetchrow(_TOKEN_BY_HASH, token.token_hash)

        return rows.reset_token(await self._run(op))

    async def find_reset_token(self, token_hash: str) -> ResetToken | None:
        """Return the token with this hash, used or expired alike."""
        row = await self._run(lambda c: c.fetchrow(_TOKEN_BY_HASH, token_hash))
        return rows.reset_token(row) if row is not None else None

    async def use_reset_token(self, token_hash: str, *, now: float) -> ResetToken | None:
        """Use a live token once, and retire every other live token of its email or user."""
        # A racing second UPDATE waits for the first one's row locks, then re-checks
        # ``used_at IS NULL`` on the committed row and skips it: one winner.
        sql = (
            "UPDATE reset_tokens SET used_at = $1 WHERE used_at IS NULL AND EXISTS ("
            "  SELECT 1 FROM reset_tokens WHERE token_hash = $2 AND used_at IS NULL"
            "  AND expires_at > $1)"
            " AND (token_hash = $2"
            "  OR email = (SELECT email FROM reset_tokens WHERE token_hash = $2)"
            "  OR user_id = (SELECT user_id FROM reset_tokens WHERE token_hash = $2))"
            " RETURNING *"
        )
        found = await self._run(lambda c: c.fetch(sql, now, token_hash))
        return next((rows.reset_token(r) for r in found if r["token_hash"] == token_hash), None)

    async def enqueue_mail(self, mail: NewMail, *, now: float) -> str:
        """Put a mail in the outbox, due at once; return its id."""
        mail_id = new_user_id()  # chosen once, so a retried insert cannot queue it twice
        sql = (
            "INSERT INTO outbox (id, kind, recipient, data, created_at, next_attempt_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $5) ON CONFLICT (id) DO NOTHING"
        )
        data = orjson.dumps(mail.data).decode()
        await self._run(lambda c: c.execute(sql, mail_id, mail.kind, mail.recipient, data, now))
        return mail_id

    async def claim_mail(self, *, now: float, lease: float, limit: int) -> list[OutboxMail]:
        """Lease up to ``limit`` due, unsent mails; SKIP LOCKED keeps replicas off each other's."""
        sql = (
            "UPDATE outbox SET lease_until = $1 WHERE id IN ("
            "  SELECT id FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= $2"
            "  AND (lease_until IS NULL OR lease_until <= $2)"
            "  ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " RETURNING *"
        )
        found = await self._run(lambda c: c.fetch(sql, now + lease, now, limit))
        return sorted((rows.outbox_mail(r) for r in found), key=lambda m: m.next_attempt_at)

    async def mark_mail_sent(self, mail_id: str, *, now: float) -> None:
        """Record that a claimed mail went out; its data is dropped."""
        sql = (
            "UPDATE outbox SET sent_at = $2, lease_until = NULL, data = '{}'::jsonb,"
            " last_error = NULL WHERE id = $1"
        )
        await self._run(lambda c: c.execute(sql, mail_id, now))

    async def mark_mail_failed(self, mail_id: str, *, error: str, retry_at: float) -> None:
        """Record a failed attempt; the mail is due again at ``retry_at``."""
        sql = (
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, lease_until = NULL,"
            " last_error = $3 WHERE id = $1 AND sent_at IS NULL"
        )
        await self._run(lambda c: c.execute(sql, mail_id, retry_at, error[:500]))

    async def count_pending_mail(self) -> int:
        """Return how many mails are not sent yet."""
        sql = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
        return int(await self._run(lambda c: c.fetchval(sql)))

    async def purge_reset_data(self, *, before: float) -> int:
        """Delete expired tokens, sent mails and done reset requests older than ``before``."""

        async def op(conn: Any) -> int:
            tokens = await conn.execute("DELETE FROM reset_tokens WHERE expires_at < $1", before)
            mails = await conn.execute("DELETE FROM outbox WHERE sent_at < $1", before)
            requests = await conn.execute("DELETE FROM reset_requests WHERE done_at < $1", before)
            # status "DELETE n"
            return sum(int(status.split()[-1]) for status in (tokens, mails, requests))

        return await self._run(op)
