"""Finding users for operators: query parsing, opaque page tokens, the JSON view of a user.

Shared by the admin API, the dashboard and ``authshim users``. Pages are keyset pages: a
token names the last row of the previous page, so a page costs the same at any depth and
users created meanwhile never shift or repeat rows.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from store.base import SOURCES, Store, User

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 1000
MAX_QUERY = 254  # the longest email there can be


class BadQuery(ValueError):
    """A query parameter is malformed; the message names it and is safe to show."""


@dataclass(frozen=True, slots=True)
class UserQuery:
    """What to list: a search prefix (or none), filters, and where the page starts."""

    q: str = ""
    source: str | None = None
    since: float | None = None
    page: str | None = None
    per_page: int = DEFAULT_PER_PAGE


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[User]
    next_page: str | None


def parse_time(text: str, name: str) -> float:
    """Epoch seconds of ``2024-05-01``, an ISO date-time (UTC unless it says), or a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(
            f"{name} must be a date (2024-05-01), a date-time or epoch seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_query(params: Mapping[str, str]) -> UserQuery:
    """Read ``q``, ``source``, ``migrated_since``, ``page``, ``per_page``; raise ``BadQuery``."""
    unknown = sorted(set(params) - {"q", "source", "migrated_since", "page", "per_page"})
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}")
    q = params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise BadQuery(f"q must be at most {MAX_QUERY} characters")
    source = params.get("source") or None
    if source is not None and source not in SOURCES:
        raise BadQuery(f"source must be one of {', '.join(SOURCES)}")
    since_text = params.get("migrated_since") or None
    since = parse_time(since_text, "migrated_since") if since_text else None
    try:
        per_page = int(params.get("per_page", DEFAULT_PER_PAGE))
    except ValueError:
        raise BadQuery("per_page must be a whole number") from None
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadQuery(f"per_page must be between 1 and {MAX_PER_PAGE}")
    return UserQuery(q, source, since, params.get("page") or None, per_page)


def _encode(kind: str, key: object, user_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, key, user_id])).decode().rstrip("=")


def _decode(token: str, kind: str) -> tuple[Any, str]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        got, key, user_id = raw
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise BadQuery("page is not a page token from a previous answer") from None
    valid_key = isinstance(key, str) if kind == "s" else isinstance(key, int | float)
    if got != kind or not valid_key or not isinstance(user_id, str):
        raise BadQuery("page belongs to another query (a search and a listing differ)")
    return key, user_id


async def find_users(store: Store, query: UserQuery) -> UserPage:
    """One page of users matching ``query``, and the token of the next page (or None)."""
    n = query.per_page
    if query.q:
        after_s = _decode(query.page, "s") if query.page else None
        found = await store.search_users(
            query.q, source=query.source, since=query.since, after=after_s, limit=n + 1
        )
        more = len(found) > n
        found = found[:n]
        token = _encode("s", found[-1][0], found[-1][1].id) if more else None
        return UserPage([user for _, user in found], token)
    after_l = _decode(query.page, "l") if query.page else None
    users = await store.list_users(
        source=query.source, since=query.since, after=after_l, limit=n + 1
    )
    more = len(users) > n
    users = users[:n]
    return UserPage(users, _encode("l", users[-1].created_at, users[-1].id) if more else None)


def iso(epoch: float | None) -> str | None:
    """ISO 8601 UTC of an epoch time, to the second."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def user_view(user: User) -> dict[str, Any]:
    """The JSON an operator sees of a user: everything but the password hash."""
    # SECURITY: the hash leaves authshim only through the authenticated export.
    return {
        "id": user.id,
        "legacy_id": user.legacy_id,
        "email": user.email,
        "username": user.username,
        "source": user.source,
        "created_at": iso(user.created_at),
        "last_login_at": iso(user.last_login_at),
        "login_count": user.login_count,
        "blocked": user.blocked,
        "profile": user.profile,
    }


async def resolve_user(store: Store, ref: str) -> User | None:
    """The user an operator means: an authshim id, else an email or username."""
    return await store.get_user(ref) or await store.find_user(ref)
