"""The sections about who is logged in and how hard guessing is: ``[session]``,
``[identity]``, ``[passwords]`` and ``[limits]``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.reader import TOKEN, Reader, Secret

IDENTITY_FIELDS = ("id", "legacy_id", "email", "username")
LOCAL_PREFIX = "local_prefix"  # the one key of [identity] that is not a header
_PREFIX = re.compile(r"[!-~]([ -~]{0,62}[!-~])?")
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A TCP ``host:port``, or a Unix socket's ``path`` (``unix:/run/authshim/fa.sock``)."""

    host: str = ""
    port: int = 0
    path: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    secret: Secret
    cookie: str = "authshim"
    max_age: float = 14 * 86400.0
    secure: bool = True
    domain: str | None = None
    cache_ttl: float = 2.0
    forward_auth_ttl: float = 5.0  # how long a web server may cache a /.authshim/session answer
    # The lean forward-auth listener (proxy/forward_auth/listener.py), or None.
    forward_auth_listen: ListenAddress | None = None
    previous_secrets: tuple[Secret, ...] = ()  # still verified, never signed with (rotation)


@dataclass(frozen=True, slots=True)
class PasswordConfig:
    time_cost: int = 2
    memory_cost: int = 19456
    parallelism: int = 1
    workers: int = 0
    queue_limit: int = 64


# --- brute force and rate limits (hardening issue) ---


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Brute-force protection and rate limits; see docs/security.md for why these defaults."""

    enabled: bool = True
    login_account_ip: int = 10
    login_ip: int = 100
    login_window: float = 86400.0
    login_block: float = 60.0
    login_block_max: float = 3600.0
    reset_ip: int = 20
    reset_address: int = 5
    signup_ip: int = 10
    signup_address: int = 3
    rate_window: float = 3600.0


SESSION_KEYS = (
    "cookie", "secret", "max_age", "secure", "domain", "cache_ttl", "previous_secrets",
    "forward_auth_ttl", "forward_auth_listen",
)  # fmt: skip
PASSWORDS_KEYS = ("time_cost", "memory_cost", "parallelism", "workers", "queue_limit")
LIMITS_KEYS = (
    "enabled", "login_account_ip", "login_ip", "login_window", "login_block", "login_block_max",
    "reset_ip", "reset_address", "signup_ip", "signup_address", "rate_window",
)  # fmt: skip


def read_session(r: Reader, doc: Mapping[str, Any]) -> SessionConfig:
    with r.table(doc, "session", SESSION_KEYS) as t:
        cookie = r.get(t, "cookie", str, "authshim")
        if not TOKEN.match(cookie):
            r.error("cookie", f"is not a valid cookie name: {cookie!r}")
        secret = r.secret(t, "secret", min_length=MIN_SECRET_LENGTH)
        return SessionConfig(
            secret=secret or Secret(""),
            cookie=cookie,
            max_age=r.duration(t, "max_age", 14 * 86400.0),
            secure=r.get(t, "secure", bool, True),
            domain=r.optional(t, "domain"),
            cache_ttl=r.duration(t, "cache_ttl", 2.0),
            forward_auth_ttl=_forward_auth_ttl(r, t),
            forward_auth_listen=_forward_auth_listen(r, t),
            previous_secrets=_previous_secrets(r, t),
        )


FORWARD_AUTH_TTL_MAX = 60.0


def _forward_auth_ttl(r: Reader, t: dict[str, Any]) -> float:
    """``session.forward_auth_ttl``: 0 (never cached) to a minute, in whole seconds."""
    ttl = r.duration(t, "forward_auth_ttl", 5.0)
    # SECURITY: a revoked session keeps working for up to this long behind a caching web
    # server, so the delay stays short and bounded.
    if not 0 <= ttl <= FORWARD_AUTH_TTL_MAX or ttl != int(ttl):
        r.error("forward_auth_ttl", f"must be whole seconds from 0 to {FORWARD_AUTH_TTL_MAX:.0f}")
        return 0.0
    return ttl


def _forward_auth_listen(r: Reader, t: dict[str, Any]) -> ListenAddress | None:
    """``session.forward_auth_listen`` (or ``$AUTHSHIM_FORWARD_AUTH_LISTEN``): the lean
    listener's ``host:port`` or ``unix:/absolute/path``, None when neither is set."""
    name = "forward_auth_listen"
    value = r.env.get(FORWARD_AUTH_LISTEN_ENV) or r.get(t, name, str, "")
    if not value:
        return None
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path.startswith("/") or "\0" in path or len(path.encode()) > 100:
            r.error(name, f"a Unix socket needs an absolute path of up to 100 bytes, got {value!r}")
            return None
        return ListenAddress(path=path)
    host, port = r.listen(t, "127.0.0.1:8082", override=FORWARD_AUTH_LISTEN_ENV, name=name)
    return ListenAddress(host, port)


FORWARD_AUTH_LISTEN_ENV = "AUTHSHIM_FORWARD_AUTH_LISTEN"


def _previous_secrets(r: Reader, t: dict[str, Any]) -> tuple[Secret, ...]:
    """``session.previous_secrets``: each ``env:NAME`` or a string, as long as a secret."""
    values = r.get(t, "previous_secrets", list, [])
    secrets: list[Secret] = []
    for i, value in enumerate(values):
        secret = r.secret({"previous_secrets": value}, "previous_secrets")
        if secret is not None and len(secret.value) < MIN_SECRET_LENGTH:
            # SECURITY: an old secret verifies sessions too, so it must be as strong.
            r.error("previous_secrets", f"[{i}] must be at least {MIN_SECRET_LENGTH} characters")
        elif secret is not None:
            secrets.append(secret)
    return tuple(secrets)


def read_identity(r: Reader, doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = doc.get("identity", {})
    if not isinstance(raw, dict):
        r.error("identity", "must be a table of header = field")
        return ()
    pairs: list[tuple[str, str]] = []
    with r.section("identity"):
        for header, source in raw.items():
            if header == LOCAL_PREFIX:
                continue  # an option, not a header: read by read_identity_prefix
            if not TOKEN.match(header):
                r.error(header, "is not a valid header name")
            elif not isinstance(source, str) or not (
                source in IDENTITY_FIELDS or source.startswith("/")
            ):
                r.error(header, f"must be one of {', '.join(IDENTITY_FIELDS)} or a JSON pointer")
            else:
                pairs.append((header, source))
    return tuple(pairs)


def read_identity_prefix(r: Reader, doc: Mapping[str, Any]) -> str:
    """``identity.local_prefix``: put before the identity header values of users authshim
    created itself (``""``: none)."""
    raw = doc.get("identity", {})
    if not isinstance(raw, dict) or LOCAL_PREFIX not in raw:
        return ""
    with r.section("identity"):
        prefix = raw[LOCAL_PREFIX]
        if not isinstance(prefix, str):
            r.error(LOCAL_PREFIX, f"must be a string, got {prefix!r}")
            return ""
        # SECURITY: the prefix goes into header values; nothing in it may end a header line.
        if not _PREFIX.fullmatch(prefix):
            r.error(LOCAL_PREFIX, "must be 1 to 64 printable ASCII characters, not starting or "
                    f"ending with a space, such as 'authshim:', got {prefix!r}")  # fmt: skip
            return ""
        return prefix


def read_passwords(r: Reader, doc: Mapping[str, Any]) -> PasswordConfig:
    with r.table(doc, "passwords", PASSWORDS_KEYS) as t:
        workers = r.get(t, "workers", int, 0)
        if workers < 0:
            r.error("workers", "must be 0 (one per core) or more")
        memory = r.positive(t, "memory_cost", 19456)
        if memory < 8:
            r.error("memory_cost", "must be at least 8 (KiB)")
        return PasswordConfig(
            time_cost=r.positive(t, "time_cost", 2),
            memory_cost=memory,
            parallelism=r.positive(t, "parallelism", 1),
            workers=max(workers, 0),
            queue_limit=r.positive(t, "queue_limit", 64),
        )


def read_limits(r: Reader, doc: Mapping[str, Any]) -> LimitsConfig:
    d = LimitsConfig()
    with r.table(doc, "limits", LIMITS_KEYS) as t:
        limits = LimitsConfig(
            enabled=r.get(t, "enabled", bool, d.enabled),
            login_account_ip=r.positive(t, "login_account_ip", d.login_account_ip),
            login_ip=r.positive(t, "login_ip", d.login_ip),
            login_window=r.duration(t, "login_window", d.login_window),
            login_block=r.duration(t, "login_block", d.login_block),
            login_block_max=r.duration(t, "login_block_max", d.login_block_max),
            reset_ip=r.positive(t, "reset_ip", d.reset_ip),
            reset_address=r.positive(t, "reset_address", d.reset_address),
            signup_ip=r.positive(t, "signup_ip", d.signup_ip),
            signup_address=r.positive(t, "signup_address", d.signup_address),
            rate_window=r.duration(t, "rate_window", d.rate_window),
        )
        for name in ("login_window", "login_block", "rate_window"):
            if getattr(limits, name) <= 0:
                r.error(name, "must be greater than 0")
        if limits.login_block_max < limits.login_block:
            r.error("login_block_max", "must not be shorter than login_block")
        return limits
