"""SQLite: the durable queue of reset requests, claimed by workers with a lease."""

from __future__ import annotations

import orjson

from store import rows
from store.base import NewMail, NewResetToken, ResetRequest, new_user_id
from store.sqlite.connection import SQLiteConnection
from store.validation import normalise_identifier
from store.values import profile_json

# Each write of a finish is conditional on this, so a request done already gets nothing more.
_PENDING = "EXISTS (SELECT 1 FROM reset_requests WHERE id = :id AND done_at IS NULL)"


class SQLiteResetQueue(SQLiteConnection):
    """The reset-request queue methods of ``SQLiteStore``."""

    async def queue_reset_request(self, email: str, *, now: float) -> str:
        """Durably queue a reset request for ``email`` (known or not); return its id."""
        request_id = new_user_id()
        await self._fetch(
            "INSERT INTO reset_requests (id, email, created_at) VALUES (?, ?, ?)",
            (request_id, email, now),
        )
        return request_id

    async def claim_reset_requests(
        self, *, now: float, lease: float, limit: int
    ) -> list[ResetRequest]:
        """Lease up to ``limit`` queued requests; one statement, so each goes to one caller."""
        # A read first: an idle worker's poll then never waits for (or takes) the write lock,
        # which would hold up every other statement on this one connection while it is locked.
        due = await self._fetch(
            "SELECT 1 FROM reset_requests WHERE done_at IS NULL"
            " AND (claimed_until IS NULL OR claimed_until <= ?) LIMIT 1",
            (now,),
        )
        if not due:
            return []
        found = await self._fetch(
            "UPDATE reset_requests SET claimed_until = ?1 WHERE id IN ("
            "  SELECT id FROM reset_requests WHERE done_at IS NULL"
            "  AND (claimed_until IS NULL OR claimed_until <= ?2)"
            "  ORDER BY created_at LIMIT ?3)"
            " RETURNING *",
            (now + lease, now, limit),
        )
        return sorted((rows.reset_request(r) for r in found), key=lambda r: r.created_at)

    async def finish_reset_request(
        self,
        request_id: str,
        *,
        now: float,
        token: NewResetToken | None = None,
        mail: NewMail | None = None,
    ) -> bool:
        """Store the token, queue the mail and mark the request done, in this order.

        The store runs one statement per transaction (``store/sqlite/__init__.py``), so the
        three writes are made safe to repeat instead: each is skipped once the request is
        done, and the mail's outbox id is the request's id. A process killed between them
        leaves the request pending; finishing it again adds at most an unmailed token (whose
        value nobody ever learns) and never a second mail.
        """
        if token is not None:
            await self._fetch(
                "INSERT INTO reset_tokens (token_hash, user_id, email, legacy_id, profile, epoch,"
                " created_at, expires_at) SELECT :hash, :user_id, :email, :legacy_id, :profile,"
                f" :epoch, :now, :expires WHERE {_PENDING}",
                {
                    "id": request_id,
                    "hash": token.token_hash,
                    "user_id": token.user_id,
                    "email": normalise_identifier(token.email),
                    "legacy_id": token.legacy_id,
                    "profile": None if token.profile is None else profile_json(token.profile),
                    "epoch": token.epoch,
                    "now": now,
                    "expires": token.expires_at,
                },
            )
        if mail is not None:
            await self._fetch(
                "INSERT INTO outbox (id, kind, recipient, data, created_at, next_attempt_at)"
                f" SELECT :id, :kind, :recipient, :data, :now, :now WHERE {_PENDING}"
                " ON CONFLICT (id) DO NOTHING",
                {
                    "id": request_id,
                    "kind": mail.kind,
                    "recipient": mail.recipient,
                    "data": orjson.dumps(mail.data).decode(),
                    "now": now,
                },
            )
        done = await self._fetch(
            "UPDATE reset_requests SET done_at = ?, email = '', claimed_until = NULL"
            " WHERE id = ? AND done_at IS NULL RETURNING 1",
            (now, request_id),
        )
        return bool(done)

    async def count_pending_reset_requests(self) -> int:
        """Return how many queued reset requests are not done yet."""
        found = await self._fetch("SELECT count(*) FROM reset_requests WHERE done_at IS NULL", ())
        return int(found[0][0])
