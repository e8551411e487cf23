"""Stored rows as records: the conversion every backend shares.

A row is read by column name, so that a column a later migration adds is ignored rather than
shifting the others. Each value is cast because SQLite's columns are not typed (on PostgreSQL
the casts change nothing); JSON columns arrive as text from both backends.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from store.base import OutboxMail, ResetRequest, ResetToken, User


class Row(Protocol):
    """A row read by column name: ``sqlite3.Row`` or ``asyncpg.Record``."""

    def __getitem__(self, key: str, /) -> Any: ...


def _time(value: Any) -> float | None:
    return None if value is None else float(value)


def user(row: Row) -> User:
    """Return the user a ``users`` row holds."""
    return User(
        id=row["id"],
        legacy_id=row["legacy_id"],
        email=row["email"],
        username=row["username"],
        password_hash=row["password_hash"],
        profile=orjson.loads(row["profile"]),
        source=row["source"],
        created_at=float(row["created_at"]),
        last_login_at=_time(row["last_login_at"]),
        login_count=int(row["login_count"]),
        blocked=bool(row["blocked"]),
        session_epoch=int(row["session_epoch"]),
    )


def reset_token(row: Row) -> ResetToken:
    """Return the token a ``reset_tokens`` row holds."""
    return ResetToken(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        email=row["email"],
        legacy_id=row["legacy_id"],
        profile=None if row["profile"] is None else orjson.loads(row["profile"]),
        epoch=int(row["epoch"]),
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        used_at=_time(row["used_at"]),
    )


def outbox_mail(row: Row) -> OutboxMail:
    """Return the mail an ``outbox`` row holds."""
    return OutboxMail(
        id=row["id"],
        kind=row["kind"],
        recipient=row["recipient"],
        data=orjson.loads(row["data"]),
        created_at=float(row["created_at"]),
        attempts=int(row["attempts"]),
        next_attempt_at=float(row["next_attempt_at"]),
        sent_at=_time(row["sent_at"]),
        last_error=row["last_error"],
    )


def reset_request(row: Row) -> ResetRequest:
    """Return the request a ``reset_requests`` row holds."""
    return ResetRequest(
        id=row["id"],
        email=row["email"],
        created_at=float(row["created_at"]),
        claimed_until=_time(row["claimed_until"]),
        done_at=_time(row["done_at"]),
    )
