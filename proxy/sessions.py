"""authshim's session cookie: signed, expiring, revocable by a per-user epoch (every session)
or by its nonce (one session: a logout).

The cookie is ``base64url(payload) "." base64url(HMAC-SHA256(secret, payload))`` with a 128-bit
random nonce in the payload, so that any replica holding the secret can verify it. The nonce
names the session: a logout stores it as revoked until the cookie expires, and every replica
reads a user's revoked nonces with the user, so a copied cookie stops working here at once and
on other replicas within ``session.cache_ttl``.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.bodies import MISSING, resolve_pointer
from proxy.config import ProfileMap, SessionConfig
from store.base import Store, User

_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    epoch: int
    expires: float
    session_id: str  # the payload's random nonce


def _derive(secret: str) -> bytes:
    return hashlib.sha256(b"authshim-session\x00" + secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Issues and verifies session cookie values."""

    def __init__(self, secret: str, max_age: float, previous: Sequence[str] = ()) -> None:
        self._key = _derive(secret)
        # Secret rotation: cookies signed with an older secret still verify; none are issued.
        self._keys = (self._key, *(_derive(old) for old in previous))
        self.max_age = max_age

    def _sign(self, payload: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(key or self._key, payload, hashlib.sha256).digest()

    def issue(self, user_id: str, epoch: int, *, now: float | None = None) -> str:
        """Return a new cookie value for ``user_id`` at session ``epoch``."""
        expires = int((now or time.time()) + self.max_age)
        payload = orjson.dumps({"u": user_id, "e": epoch, "x": expires, "n": secrets.token_hex(16)})
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, value: str, *, now: float | None = None) -> Claims | None:
        """Return the claims of a genuine, unexpired cookie value, else None."""
        body, _, sig = value.partition(".")
        try:
            payload, signature = _unb64(body), _unb64(sig)
        except ValueError:
            return None
        # SECURITY: constant-time comparison of the MAC, under every accepted key (no early exit
        # that would tell which one matched).
        matched = [hmac.compare_digest(signature, self._sign(payload, key)) for key in self._keys]
        if not any(matched):
            return None
        try:
            data = orjson.loads(payload)
            claims = Claims(str(data["u"]), int(data["e"]), float(data["x"]), str(data["n"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return claims if claims.expires > (now or time.time()) else None


def set_cookie(config: SessionConfig, value: str) -> str:
    """The ``Set-Cookie`` header value that gives the client its session."""
    parts = [f"{config.cookie}={value}", "Path=/", f"Max-Age={int(config.max_age)}", "HttpOnly"]
    parts.append("SameSite=Lax")
    if config.secure:
        parts.append("Secure")
    if config.domain:
        parts.append(f"Domain={config.domain}")
    return "; ".join(parts)


def clear_cookie(config: SessionConfig) -> str:
    """The ``Set-Cookie`` header value that removes the session cookie."""
    parts = [f"{config.cookie}=", "Path=/", "Max-Age=0", "HttpOnly", "SameSite=Lax"]
    if config.secure:
        parts.append("Secure")
    if config.domain:
        parts.append(f"Domain={config.domain}")
    return "; ".join(parts)


_NONE_REVOKED: frozenset[str] = frozenset()


class Unknown(enum.Enum):
    """Not known without a store read (``Sessions.user_now``)."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN


class Sessions:
    """Resolves a request's session cookie to a live user, caching users (and their revoked
    sessions) for ``session.cache_ttl``."""

    def __init__(self, config: SessionConfig, store: Store) -> None:
        self.config = config
        previous = [old.value for old in config.previous_secrets]
        self.codec = SessionCodec(config.secret.value, config.max_age, previous)
        self._store = store
        self._cache: dict[str, tuple[float, User | None, frozenset[str]]] = {}

    def issue(self, user: User) -> str:
        """The ``Set-Cookie`` value for a new session of ``user``."""
        return set_cookie(self.config, self.codec.issue(user.id, user.session_epoch))

    def forget(self, user_id: str) -> None:
        """Drop a cached user after it changed here (new epoch, blocked, deleted)."""
        self._cache.pop(user_id, None)

    async def user(self, cookie_value: str | None) -> User | None:
        """Return the user of a valid, unrevoked session cookie value, else None."""
        claims = self.codec.verify(cookie_value) if cookie_value else None
        if claims is None:
            return None
        hit = self._cached(claims.user_id)  # the common case, without a coroutine
        return _live(claims, hit if hit is not None else await self._load(claims.user_id))

    def user_now(self, cookie_value: str | None) -> User | Unknown | None:
        """``user()`` without waiting: ``UNKNOWN`` when the user must be read from the store
        first (not cached here, or cached longer than ``session.cache_ttl`` ago)."""
        claims = self.codec.verify(cookie_value) if cookie_value else None
        if claims is None:
            return None
        hit = self._cached(claims.user_id)
        return UNKNOWN if hit is None else _live(claims, hit)

    async def revoke(self, cookie_value: str | None) -> bool:
        """End the session of a genuine cookie value for good (a logout): here at once, on
        other replicas when their cached copy of the user expires. Return whether one ended.

        Raises:
            StoreError: the store failed; the session is still valid elsewhere.
        """
        claims = self.codec.verify(cookie_value) if cookie_value else None
        if claims is None:
            return False
        await self._store.revoke_session(
            claims.user_id, claims.session_id, expires_at=claims.expires
        )
        hit = self._cache.get(claims.user_id)
        if hit is not None:
            self._cache[claims.user_id] = (hit[0], hit[1], hit[2] | {claims.session_id})
        return True

    def _cached(self, user_id: str) -> tuple[float, User | None, frozenset[str]] | None:
        hit = self._cache.get(user_id)
        if hit is not None and time.monotonic() - hit[0] < self.config.cache_ttl:
            return hit
        return None

    async def _load(self, user_id: str) -> tuple[float, User | None, frozenset[str]]:
        """Read the user and its revoked sessions from the store (one read) and cache them
        (a miss of ``_cached``)."""
        now = time.monotonic()
        user, revoked = await self._store.get_session_user(user_id, now=time.time())
        if len(self._cache) > 10_000:
            self._cache.clear()
        entry = (now, user, revoked or _NONE_REVOKED)
        self._cache[user_id] = entry
        return entry


def _live(claims: Claims, cached: tuple[float, User | None, frozenset[str]]) -> User | None:
    """The claims' user, unless the session has ended since the cookie was issued."""
    _, user, revoked = cached
    # SECURITY: a bumped epoch (password change, revoke) ends every older session.
    if user is None or user.blocked or user.session_epoch != claims.epoch:
        return None
    if claims.session_id in revoked:  # SECURITY: this session was logged out
        return None
    return user


def identity_headers(
    user: User,
    identity: tuple[tuple[str, str], ...],
    profile_map: ProfileMap,
    local_prefix: str = "",
) -> dict[str, str]:
    """The configured identity headers for ``user``, with the legacy profile's original case;
    ``local_prefix`` goes before each value of a user authshim created itself (a local
    sign-up or an admin's user: source ``signup`` or ``admin`` with no legacy id)."""
    # SECURITY: such a user has no legacy record, so a legacy app that still trusts these
    # headers must never take them for a legacy user who has the same name.
    created_here = user.source in ("signup", "admin") and not user.legacy_id
    prefix = local_prefix if created_here else ""
    headers: dict[str, str] = {}
    for header, source in identity:
        value = _identity_value(user, source, profile_map)
        if value is not None:
            # SECURITY: a profile value must not be able to inject a header line.
            headers[header] = prefix + _UNSAFE_VALUE.sub("", value)
    return headers


def _identity_value(user: User, source: str, profile_map: ProfileMap) -> str | None:
    if source == "id":
        return user.id
    pointer: str | None = source if source.startswith("/") else getattr(profile_map, source)
    fallback: Any = getattr(user, source, None) if not source.startswith("/") else None
    value = resolve_pointer(user.profile, pointer) if pointer is not None else MISSING
    if value is MISSING or value is None or isinstance(value, dict | list):
        value = fallback
    return None if value is None else str(value)
