"""SQLite: reset tokens (only their hashes) and the outbox of mails to send."""

from __future__ import annotations

import time

import orjson

from store import rows
from store.base import NewMail, NewResetToken, OutboxMail, ResetToken, new_user_id
from store.sqlite.connection import SQLiteConnection
from store.validation import normalise_identifier
from store.values import profile_json


class SQLiteReset(SQLiteConnection):
    """The reset-token and outbox methods of ``SQLiteStore``."""

    async def insert_reset_token(self, token: NewResetToken) -> ResetToken:
        """Store a reset token (only its hash)."""
        found = await self._fetch(
            "INSERT INTO reset_tokens (token_hash, user_id, email, legacy_id, profile, epoch,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                token.token_hash,
                token.user_id,
                normalise_identifier(token.email),
                token.legacy_id,
                None if token.profile is None else profile_json(token.profile),
                token.epoch,
                time.time(),
                token.expires_at,
            ),
        )
        return rows.reset_token(found[0])

    async def find_reset_token(self, token_hash: str) -> ResetToken | None:
        """Return the token with this hash, used or expired alike."""
        found = await self._fetch("SELECT * FROM reset_tokens WHERE token_hash = ?", (token_hash,))
        return rows.reset_token(found[0]) if found else None

    async def use_reset_token(self, token_hash: str, *, now: float) -> ResetToken | None:
        """Use a live token once, and retire every other live token of its email or user."""
        # One statement, so two requests racing with one token cannot both get it.
        found = await self._fetch(
            "UPDATE reset_tokens SET used_at = ?1 WHERE used_at IS NULL AND EXISTS ("
            "  SELECT 1 FROM reset_tokens WHERE token_hash = ?2 AND used_at IS NULL"
            "  AND expires_at > ?1)"
            " AND (token_hash = ?2"
            "  OR email = (SELECT email FROM reset_tokens WHERE token_hash = ?2)"
            "  OR user_id = (SELECT user_id FROM reset_tokens WHERE token_hash = ?2))"
            " RETURNING *",
            (now, token_hash),
        )
        return next((rows.reset_token(r) for r in found if r["token_hash"] == token_hash), None)

    async def enqueue_mail(self, mail: NewMail, *, now: float) -> str:
        """Put a mail in the outbox, due at once; return its id."""
        mail_id = new_user_id()
        await self._fetch(
            "INSERT INTO outbox (id, kind, recipient, data, created_at, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (mail_id, mail.kind, mail.recipient, orjson.dumps(mail.data).decode(), now, now),
        )
        return mail_id

    async def claim_mail(self, *, now: float, lease: float, limit: int) -> list[OutboxMail]:
        """Lease up to ``limit`` due, unsent mails; one statement, so each goes to one caller."""
        # A read first: an idle worker's poll then never waits for (or takes) the write lock,
        # which would hold up every other statement on this one connection while it is locked.
        due = await self._fetch(
            "SELECT 1 FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ?1"
            " AND (lease_until IS NULL OR lease_until <= ?1) LIMIT 1",
            (now,),
        )
        if not due:
            return []
        found = await self._fetch(
            "UPDATE outbox SET lease_until = ?1 WHERE id IN ("
            "  SELECT id FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ?2"
            "  AND (lease_until IS NULL OR lease_until <= ?2)"
            "  ORDER BY next_attempt_at LIMIT ?3)"
            " RETURNING *",
            (now + lease, now, limit),
        )
        return sorted((rows.outbox_mail(r) for r in found), key=lambda m: m.next_attempt_at)

    async def mark_mail_sent(self, mail_id: str, *, now: float) -> None:
        """Record that a claimed mail went out; its data is dropped."""
        await self._fetch(
            "UPDATE outbox SET sent_at = ?, lease_until = NULL, data = '{}', last_error = NULL"
            " WHERE id = ?",
            (now, mail_id),
        )

    async def mark_mail_failed(self, mail_id: str, *, error: str, retry_at: float) -> None:
        """Record a failed attempt; the mail is due again at ``retry_at``."""
        await self._fetch(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, lease_until = NULL,"
            " last_error = ? WHERE id = ? AND sent_at IS NULL",
            (retry_at, error[:500], mail_id),
        )

    async def count_pending_mail(self) -> int:
        """Return how many mails are not sent yet."""
        found = await self._fetch("SELECT count(*) FROM outbox WHERE sent_at IS NULL", ())
        return int(found[0][0])

    async def purge_reset_data(self, *, before: float) -> int:
        """Delete expired tokens, sent mails and done reset requests older than ``before``."""
        tokens = await self._fetch(
            "DELETE FROM reset_tokens WHERE expires_at < ? RETURNING 1", (before,)
        )
        mails = await self._fetch("DELETE FROM outbox WHERE sent_at < ? RETURNING 1", (before,))
        requests = await self._fetch(
            "DELETE FROM reset_requests WHERE done_at < ? RETURNING 1", (before,)
        )
        return len(tokens) + len(mails) + len(requests)
