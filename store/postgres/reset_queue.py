"""PostgreSQL: the durable queue of reset requests, claimed by workers with a lease."""

from __future__ import annotations

from typing import Any

import orjson

from store import rows
from store.base import NewMail, NewResetToken, ResetRequest, new_user_id
from store.postgres.connection import PostgresConnection
from store.validation import normalise_identifier
from store.values import profile_json


class PostgresResetQueue(PostgresConnection):
    """The reset-request queue methods of ``PostgresStore``."""

    async def queue_reset_request(self, email: str, *, now: float) -> str:
        """Durably queue a reset request for ``email`` (known or not); return its id."""
        request_id = new_user_id()  # chosen once, so a retried insert cannot queue it twice
        sql = (
            "INSERT INTO reset_requests (id, email, created_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO NOTHING"
        )
        await self._run(lambda c: c.execute(sql, request_id, email, now))
        return request_id

    async def claim_reset_requests(
        self, *, now: float, lease: float, limit: int
    ) -> list[ResetRequest]:
        """Lease up to ``limit`` queued requests; SKIP LOCKED keeps replicas off each other's."""
        sql = (
            "UPDATE reset_requests SET claimed_until = $1 WHERE id IN ("
            "  SELECT id FROM reset_requests WHERE done_at IS NULL"
            "  AND (claimed_until IS NULL OR claimed_until <= $2)"
            "  ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " RETURNING *"
        )
        found = await self._run(lambda c: c.fetch(sql, now + lease, now, limit))
        return sorted((rows.reset_request(r) for r in found), key=lambda r: r.created_at)

    async def finish_reset_request(
        self,
        request_id: str,
        *,
        now: float,
        token: NewResetToken | None = None,
        mail: NewMail | None = None,
    ) -> bool:
        """Mark the request done, store the token and queue the mail, in one transaction."""

        async def op(conn: Any) -> bool:
            async with conn.transaction():
                # First: a second worker finishing the same request waits on this row's lock,
                # then finds it done and writes nothing.
                done = await conn.fetchval(
                    "UPDATE reset_requests SET done_at = $2, email = '', claimed_until = NULL"
                    " WHERE id = $1 AND done_at IS NULL RETURNING id",
                    request_id,
                    now,
                )
                if done is None:
                    return False
                if token is not None:
                    await conn.execute(
                        "INSERT INTO reset_tokens (token_hash, user_id, email, legacy_id, profile,"
                        " epoch, created_at, expires_at)"
                        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)",
                        token.token_hash,
                        token.user_id,
                        normalise_identifier(token.email),
                        token.legacy_id,
                        None if token.profile is None else profile_json(token.profile),
                        token.epoch,
                        now,
                        token.expires_at,
                    )
                if mail is not None:
                    await conn.execute(
                        "INSERT INTO outbox (id, kind, recipient, data, created_at,"
                        " next_attempt_at) VALUES ($1, $2, $3, $4::jsonb, $5, $5)"
                        " ON CONFLICT (id) DO NOTHING",
                        request_id,
                        mail.kind,
                        mail.recipient,
                        orjson.dumps(mail.data).decode(),
                        now,
                    )
                return True

        return await self._run(op)

    async def count_pending_reset_requests(self) -> int:
        """Return how many queued reset requests are not done yet."""
        sql = "SELECT count(*) FROM reset_requests WHERE done_at IS NULL"
        return int(await self._run(lambda c: c.fetchval(sql)))
