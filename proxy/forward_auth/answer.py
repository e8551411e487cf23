"""What a forward-auth check answers for a session cookie, wherever it is asked.

200 with the identity headers for a valid session, 401 without one; both may be cached by the
operator's own web server, keyed by the session cookie, for ``session.forward_auth_ttl``
seconds (docs/deployment.md): page views of a logged-in user then cost that server a cache
look-up instead of a round trip. A revoked session (logout, password change, admin block) is
refused by the web server within that TTL plus ``session.cache_ttl``. A store failure is a
503 that is never cached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from proxy.flows.common import RETRY_AFTER
from proxy.services import Services
from proxy.sessions import UNKNOWN
from store.base import User
from store.errors import StoreError

USER_ID_HEADER = "X-Authshim-User-Id"
NOT_CACHED = {"Cache-Control": "no-store"}
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


UNAVAILABLE = Answer(
    503,
    {**NOT_CACHED, **_JSON, **RETRY_AFTER},
    orjson.dumps({"error": "the user store is unavailable"}),
)
_NO_SESSION = orjson.dumps({"error": "no valid session"})


def cache_headers(ttl: float) -> dict[str, str]:
    """Headers that let the operator's own web server, and nothing else, cache an answer."""
    if ttl <= 0:
        return dict(NOT_CACHED)
    seconds = str(int(ttl))
    return {
        # nginx reads X-Accel-Expires first and then ignores Cache-Control, so this one must
        # come first; its cache key is the session cookie (recipes/nginx-forward-auth).
        "X-Accel-Expires": seconds,
        # SECURITY: any other cache (a CDN, a browser that reaches this path) keeps the answer
        # private and per cookie.
        "Cache-Control": f"private, max-age={seconds}",
        "Vary": "Cookie",
    }


def for_user(svc: Services, user: User | None) -> Answer:
    """The answer for a session of ``user`` (None: no valid session)."""
    cache = cache_headers(svc.config.session.forward_auth_ttl)
    if user is None:
        return Answer(401, {**cache, **_JSON}, _NO_SESSION)
    return Answer(200, {**cache, USER_ID_HEADER: user.id, **svc.identity(user)})


def check_now(svc: Services, cookie_value: str | None) -> Answer | None:
    """The answer for a session cookie's value, or None when the store (or the rules) must be
    asked first: then ``await check()``."""
    user = svc.session_user_now(cookie_value)
    return None if user is UNKNOWN else for_user(svc, user)


async def check(svc: Services, cookie_value: str | None) -> Answer:
    """The answer for a session cookie's value (None: the request carried none)."""
    cookies = {svc.config.session.cookie: cookie_value} if cookie_value else None
    try:
        user = await svc.session_user(cookies)
    except StoreError:
        return UNAVAILABLE
    return for_user(svc, user)


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header; of its last copy, as aiohttp's
    ``request.cookies`` reads it on the main listener."""
    if name not in header:
        return None
    found = None
    for pair in header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            found = value.strip()
    return found
