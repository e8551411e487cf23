"""The context every rule gets: one JSON-able document per event (schema in docs/rules.md).

SECURITY: built from named fields only, so a password or a hash can never be in it; profile
keys that name a password are dropped as well (a legacy profile may carry one).
"""

from __future__ import annotations

import time
from typing import Any

from store.base import User

AUTHS = ("local", "captured", "reset", "signup", "session", "test")


def user_context(user: User) -> dict[str, Any]:
    """A stored user as rules see it."""
    return {
        "id": user.id,
        "legacy_id": user.legacy_id,
        "email": user.email,
        "username": user.username,
        "profile": scrubbed(user.profile),
        "source": user.source,
        "created": user.created_at,
        "login_count": user.login_count,
        "blocked": user.blocked,
    }


def pending_context(
    *,
    email: str | None,
    username: str | None,
    legacy_id: str | None,
    profile: dict[str, Any],
    source: str,
) -> dict[str, Any]:
    """A user about to be stored (capture, sign-up): no id, never logged in yet."""
    return {
        "id": None,
        "legacy_id": legacy_id,
        "email": email,
        "username": username,
        "profile": scrubbed(profile),
        "source": source,
        "created": None,
        "login_count": 0,
        "blocked": False,
    }


def build_context(
    event: str,
    auth: str,
    user: dict[str, Any],
    *,
    client: str | None,
    route: str | None,
    mode: str,
) -> dict[str, Any]:
    """The whole context of one event."""
    return {
        "event": event,
        "auth": auth,
        "user": user,
        "client": {"ip": client} if client else None,
        "route": route,
        "mode": mode,
        "time": time.time(),
    }


def scrubbed(value: Any) -> Any:
    """``value`` with every object key that names a password or hash left out, at any depth."""
    if isinstance(value, dict):
        return {k: scrubbed(v) for k, v in value.items() if not _secret_key(k)}
    if isinstance(value, list):
        return [scrubbed(v) for v in value]
    return value


def _secret_key(key: Any) -> bool:
    folded = str(key).casefold()
    # SECURITY: a legacy profile's "password", "password_hash", "passwd" never reach a rule.
    return "passw" in folded or "passwd" in folded or folded in ("hash", "pwd", "pass")
