"""The export format: one JSON object per user per line (NDJSON), close to Auth0's bulk import.

Each line is a valid Auth0 user-import object (``custom_password_hash`` with algorithm
``argon2`` takes the PHC string as is); what Auth0 has no field for sits in
``app_metadata.authshim``. Other providers take the same data renamed: see ``docs/admin.md``.
``user_from_record`` reads a line back, so that an export can be re-imported losslessly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import orjson

from proxy.admin.users import iso
from store.base import Store, User

FORMAT = "authshim-export/1"
BATCH = 1000


def export_record(user: User) -> dict[str, Any]:
    """One user as an export object, password hash (argon2id PHC string) included."""
    return {
        "user_id": user.id,
        "email": user.email,
        "email_verified": False,  # authshim never proved the address; the legacy app may have
        "username": user.username,
        "blocked": user.blocked,
        "custom_password_hash": {"algorithm": "argon2", "hash": {"value": user.password_hash}},
        "user_metadata": user.profile,
        "app_metadata": {
            "authshim": {
                "format": FORMAT,
                "legacy_id": user.legacy_id,
                "source": user.source,
                "created_at": iso(user.created_at),
                "last_login_at": iso(user.last_login_at),
                "login_count": user.login_count,
                "session_epoch": user.session_epoch,
            }
        },
    }


def _epoch(text: str | None) -> float | None:
    return None if text is None else dt.datetime.fromisoformat(text).timestamp()


def user_from_record(record: dict[str, Any]) -> User:
    """The user an export line describes (times to the second, as exported).

    Raises:
        ValueError: the line is not an authshim export object.
    """
    try:
        meta = record["app_metadata"]["authshim"]
        if meta["format"] != FORMAT:
            raise ValueError(f"unknown export format {meta['format']!r}")
        return User(
            id=record["user_id"],
            legacy_id=meta["legacy_id"],
            email=record["email"],
            username=record["username"],
            password_hash=record["custom_password_hash"]["hash"]["value"],
            profile=record["user_metadata"],
            source=meta["source"],
            created_at=_epoch(meta["created_at"]) or 0.0,
            last_login_at=_epoch(meta["last_login_at"]),
            login_count=int(meta["login_count"]),
            blocked=bool(record["blocked"]),
            session_epoch=int(meta["session_epoch"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an authshim export object: missing {exc}") from None


async def export_lines(store: Store, *, batch: int = BATCH) -> AsyncIterator[bytes]:
    """Every user, in creation order, one NDJSON line each; pages of ``batch`` users."""
    after: tuple[float, str] | None = None
    while users := await store.list_users(after=after, limit=batch):
        for user in users:
            yield orjson.dumps(export_record(user)) + b"\n"
        after = (users[-1].created_at, users[-1].id)
