"""The TOML config, parsed once at start into frozen dataclasses.

Every problem is collected and reported together, each naming its key (``login[1].success``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from proxy.errors import ConfigError

T = TypeVar("T")
_UNSET: Any = object()
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
IDENTITY_FIELDS = ("id", "legacy_id", "email", "username")
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value whose repr never shows it."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = 64 * 1024
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 100
    max_answer: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = "sqlite:///./authshim.db"
    pool_min: int = 2
    pool_max: int = 10


@dataclass(frozen=True, slots=True)
class MigrationConfig:
    mode: str = "migrate"
    validate: bool = True
    requires_username: bool = False
    mode_poll: float = 2.0


@dataclass(frozen=True, slots=True)
class SuccessRules:
    """All rules must hold for the legacy app's answer to count as an accepted login."""

    status: tuple[int, ...] = ()
    cookie: str | None = None
    cookie_prefix: str | None = None
    json: str | None = None
    json_equals: Any = _UNSET

    @property
    def has_json_equals(self) -> bool:
        return self.json_equals is not _UNSET


@dataclass(frozen=True, slots=True)
class ProfileSource:
    """Where a captured profile comes from: a pointer into the login answer, or a GET."""

    json: str | None = None
    fetch: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A configured answer: a redirect, or a status with an optional JSON body."""

    redirect: str | None = None
    next_param: str | None = None
    json: Any = None
    status: int = 200


@dataclass(frozen=True, slots=True)
class LoginRoute:
    path: str
    format: str
    identifier: str
    password: str
    success: SuccessRules
    profile: ProfileSource
    answer: Answer
    failure: Answer


@dataclass(frozen=True, slots=True)
class ProfileMap:
    """JSON pointers into a legacy profile."""

    legacy_id: str | None = "/id"
    email: str | None = "/email"
    username: str | None = "/username"


@dataclass(frozen=True, slots=True)
class LogoutConfig:
    path: str | None = None


@dataclass(frozen=True, slots=True)
class SessionConfig:
    secret: Secret
    cookie: str = "authshim"
    max_age: float = 14 * 86400.0
    secure: bool = True
    domain: str | None = None
    cache_ttl: float = 2.0


@dataclass(frozen=True, slots=True)
class PasswordConfig:
    time_cost: int = 2
    memory_cost: int = 19456
    parallelism: int = 1
    workers: int = 0
    queue_limit: int = 64


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    upstream: UpstreamConfig
    store: StoreConfig
    migration: MigrationConfig
    logins: tuple[LoginRoute, ...]
    profile: ProfileMap
    logout: LogoutConfig
    session: SessionConfig
    identity: tuple[tuple[str, str], ...]
    passwords: PasswordConfig
    log: LogConfig


def parse_duration(value: object) -> float:
    """Return seconds for ``"14d"``, ``"30m"``, ``"5s"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s' or '14d'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as '30s' or '14d', got {value!r}")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``"host:port"`` (IPv6 in brackets) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected 'host:port', got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ':8080' means all


class _Reader:
    """Walks the raw TOML, casting values strictly and collecting every problem with its key."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.errors: list[str] = []
        self._path: list[str] = []

    def key(self, name: str) -> str:
        return ".".join([*self._path, name]) if name else ".".join(self._path)

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"{self.key(name)}: {message}")

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        self._path.append(name)
        try:
            yield
        finally:
            self._path.pop()

    def table(self, raw: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.error(name, "must be a table")
            return {}
        with self.section(name):
            self.unknown(value, allowed)
        return value

    def unknown(self, raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        for name in raw:
            if name not in allowed:
                self.error(name, f"unknown key (expected one of: {', '.join(allowed)})")

    def get(self, raw: Mapping[str, Any], name: str, kind: type[T], default: T) -> T:
        value = raw.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.error(name, f"must be {kind.__name__}, got {type(value).__name__}")
            return default
        return value

    def positive(self, raw: Mapping[str, Any], name: str, default: int) -> int:
        value = self.get(raw, name, int, default)
        if value <= 0:
            self.error(name, "must be greater than 0")
            return default
        return value

    def duration(self, raw: Mapping[str, Any], name: str, default: float) -> float:
        if name not in raw:
            return default
        try:
            return parse_duration(raw[name])
        except ValueError as exc:
            self.error(name, str(exc))
            return default

    def choice(self, raw: Mapping[str, Any], name: str, options: tuple[str, ...]) -> str:
        value = self.get(raw, name, str, options[0])
        if value not in options:
            self.error(name, f"must be one of {', '.join(options)}, got {value!r}")
            return options[0]
        return value

    def pointer(self, raw: Mapping[str, Any], name: str, default: str | None) -> str | None:
        value = raw.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not (value == "" or value.startswith("/")):
            self.error(name, f"must be a JSON pointer such as '/user/email', got {value!r}")
            return default
        return value

    def path(self, raw: Mapping[str, Any], name: str, *, required: bool) -> str | None:
        value = raw.get(name)
        if value is None:
            if required:
                self.error(name, "is required")
            return None
        if not isinstance(value, str) or not value.startswith("/"):
            self.error(name, f"must be an absolute path starting with '/', got {value!r}")
            return None
        return value

    def secret(self, raw: Mapping[str, Any], name: str) -> Secret | None:
        value = raw.get(name)
        if value is None:
            self.error(name, "is required (write it as env:NAME to read it from the environment)")
            return None
        if not isinstance(value, str):
            self.error(name, "must be a string")
            return None
        if value.startswith("env:"):
            var = value[4:]
            if var not in self.env:
                self.error(name, f"environment variable {var} is not set")
                return None
            value = self.env[var]
        return Secret(value)


def _read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a TOML config file; raise ``ConfigError`` listing every problem."""
    return parse_config(_read_toml(path), os.environ if env is None else env)


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str]) -> Config:
    """Turn a TOML document into a ``Config``; raise ``ConfigError`` listing every problem."""
    r = _Reader(env)
    r.unknown(raw, _SECTIONS)
    config = Config(
        server=_server(r, r.table(raw, "server", ("listen", "max_body", "trusted_proxies"))),
        upstream=_upstream(r, raw),
        store=_store(r, r.table(raw, "store", ("url", "pool_min", "pool_max"))),
        migration=_migration(r, raw),
        logins=_logins(r, raw.get("login", [])),
        profile=_profile_map(r, r.table(raw, "profile", ("legacy_id", "email", "username"))),
        logout=_logout(r, r.table(raw, "logout", ("path",))),
        session=_session(r, raw),
        identity=_identity(r, raw.get("identity", {})),
        passwords=_passwords(r, raw),
        log=_log(r, r.table(raw, "log", ("level",))),
    )
    if r.errors:
        raise ConfigError(r.errors)
    return config


def _server(r: _Reader, raw: dict[str, Any]) -> ServerConfig:
    host, port = "127.0.0.1", 8080
    with r.section("server"):
        try:
            host, port = parse_listen(r.get(raw, "listen", str, "127.0.0.1:8080"))
        except ValueError as exc:
            r.error("listen", str(exc))
        proxies = r.get(raw, "trusted_proxies", list, [])
        if not all(isinstance(p, str) for p in proxies):
            r.error("trusted_proxies", "must be a list of addresses")
            proxies = []
        return ServerConfig(host, port, r.positive(raw, "max_body", 64 * 1024), tuple(proxies))


def _upstream(r: _Reader, raw: Mapping[str, Any]) -> UpstreamConfig:
    allowed = ("url", "connect_timeout", "read_timeout", "pool_size", "max_answer")
    t = r.table(raw, "upstream", allowed)
    with r.section("upstream"):
        url = r.get(t, "url", str, "")
        parts = urlsplit(url)
        if not url:
            r.error("url", "is required (the legacy app, such as 'http://127.0.0.1:8000')")
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            r.error("url", f"must be an http:// or https:// URL, got {url!r}")
        return UpstreamConfig(
            url=url.rstrip("/"),
            connect_timeout=r.duration(t, "connect_timeout", 5.0),
            read_timeout=r.duration(t, "read_timeout", 30.0),
            pool_size=r.positive(t, "pool_size", 100),
            max_answer=r.positive(t, "max_answer", 1024 * 1024),
        )


def _store(r: _Reader, raw: dict[str, Any]) -> StoreConfig:
    with r.section("store"):
        url = r.get(raw, "url", str, "sqlite:///./authshim.db")
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            r.error("url", f"must start with sqlite:/// or postgresql://, got {url!r}")
        pool_min, pool_max = r.positive(raw, "pool_min", 2), r.positive(raw, "pool_max", 10)
        if pool_min > pool_max:
            r.error("pool_min", "must not be greater than pool_max")
        return StoreConfig(url, pool_min, pool_max)


def _migration(r: _Reader, raw: Mapping[str, Any]) -> MigrationConfig:
    t = r.table(raw, "migration", ("mode", "validate", "requires_username", "mode_poll"))
    with r.section("migration"):
        return MigrationConfig(
            mode=r.choice(t, "mode", ("migrate", "cutover")),
            validate=r.get(t, "validate", bool, True),
            requires_username=r.get(t, "requires_username", bool, False),
            mode_poll=r.duration(t, "mode_poll", 2.0),
        )


_LOGIN_KEYS = (
    "path",
    "format",
    "identifier",
    "password",
    "success",
    "profile",
    "answer",
    "failure",
)


def _logins(r: _Reader, raw: object) -> tuple[LoginRoute, ...]:
    if not isinstance(raw, list):
        r.error("login", "must be an array of tables ([[login]])")
        return ()
    routes: list[LoginRoute] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        with r.section(f"login[{i}]"):
            if not isinstance(item, dict):
                r.error("", "must be a table")
                continue
            r.unknown(item, _LOGIN_KEYS)
            path = r.path(item, "path", required=True) or "/"
            if path in seen:
                r.error("path", f"{path} is intercepted twice")
            seen.add(path)
            route = LoginRoute(
                path=path,
                format=r.choice(item, "format", ("form", "json")),
                identifier=_field_name(r, item, "identifier"),
                password=_field_name(r, item, "password"),
                success=_success(r, item.get("success")),
                profile=_profile_source(r, item.get("profile")),
                answer=_answer(r, item, "answer", default_status=200),
                failure=_answer(r, item, "failure", default_status=401),
            )
            routes.append(route)
    return tuple(routes)


def _field_name(r: _Reader, raw: dict[str, Any], name: str) -> str:
    value = r.get(raw, name, str, "")
    if not value:
        r.error(name, "is required (the form field or JSON key that carries it)")
    return value


def _sub(r: _Reader, raw: object, name: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
    if raw is None:
        r.error(name, "is required")
        return None
    if not isinstance(raw, dict):
        r.error(name, "must be a table")
        return None
    with r.section(name):
        r.unknown(raw, allowed)
    return raw


def _success(r: _Reader, raw: object) -> SuccessRules:
    allowed = ("status", "cookie", "cookie_prefix", "json", "json_equals")
    t = _sub(r, raw, "success", allowed)
    if t is None:
        return SuccessRules()
    with r.section("success"):
        status = t.get("status", [])
        status = [status] if isinstance(status, int) and not isinstance(status, bool) else status
        if not isinstance(status, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in status
        ):
            r.error("status", "must be a list of HTTP status codes")
            status = []
        rules = SuccessRules(
            status=tuple(status),
            cookie=r.get(t, "cookie", str, "") or None,
            cookie_prefix=r.get(t, "cookie_prefix", str, "") or None,
            json=r.pointer(t, "json", None),
            json_equals=t.get("json_equals", _UNSET),
        )
        if rules.has_json_equals and rules.json is None:
            r.error("json_equals", "needs success.json (the pointer it compares)")
        if not (rules.status or rules.cookie or rules.cookie_prefix or rules.json):
            r.error("", "needs at least one rule: status, cookie, cookie_prefix or json")
        return rules


def _profile_source(r: _Reader, raw: object) -> ProfileSource:
    t = _sub(r, raw, "profile", ("json", "fetch"))
    if t is None:
        return ProfileSource()
    with r.section("profile"):
        source = ProfileSource(
            json=r.pointer(t, "json", None), fetch=r.path(t, "fetch", required=False)
        )
        if (source.json is None) == (source.fetch is None):
            r.error("", "needs exactly one of json (a pointer into the answer) or fetch (a path)")
        return source


def _answer(r: _Reader, raw: dict[str, Any], name: str, *, default_status: int) -> Answer:
    t = _sub(r, raw.get(name), name, ("redirect", "next_param", "json", "status"))
    if t is None:
        return Answer()
    with r.section(name):
        redirect = r.get(t, "redirect", str, "") or None
        if redirect is not None and not (redirect.startswith("/") or "://" in redirect):
            r.error("redirect", f"must be a path or an absolute URL, got {redirect!r}")
        status = r.get(t, "status", int, 302 if redirect else default_status)
        if not 100 <= status <= 599:
            r.error("status", f"must be an HTTP status code, got {status}")
        answer = Answer(
            redirect=redirect,
            next_param=r.get(t, "next_param", str, "") or None,
            json=t.get("json"),
            status=status,
        )
        if answer.redirect and answer.json is not None:
            r.error("", "takes redirect or json, not both")
        if answer.next_param and not answer.redirect:
            r.error("next_param", "only applies with redirect")
        return answer


def _profile_map(r: _Reader, raw: dict[str, Any]) -> ProfileMap:
    with r.section("profile"):
        return ProfileMap(
            legacy_id=r.pointer(raw, "legacy_id", "/id"),
            email=r.pointer(raw, "email", "/email"),
            username=r.pointer(raw, "username", "/username"),
        )


def _logout(r: _Reader, raw: dict[str, Any]) -> LogoutConfig:
    with r.section("logout"):
        return LogoutConfig(path=r.path(raw, "path", required=False))


def _session(r: _Reader, raw: Mapping[str, Any]) -> SessionConfig:
    allowed = ("cookie", "secret", "max_age", "secure", "domain", "cache_ttl")
    t = r.table(raw, "session", allowed)
    with r.section("session"):
        cookie = r.get(t, "cookie", str, "authshim")
        if not _TOKEN.match(cookie):
            r.error("cookie", f"is not a valid cookie name: {cookie!r}")
        secret = r.secret(t, "secret")
        if secret is not None and len(secret.value) < MIN_SECRET_LENGTH:
            r.error("secret", f"must be at least {MIN_SECRET_LENGTH} characters long")
        return SessionConfig(
            secret=secret or Secret(""),
            cookie=cookie,
            max_age=r.duration(t, "max_age", 14 * 86400.0),
            secure=r.get(t, "secure", bool, True),
            domain=r.get(t, "domain", str, "") or None,
            cache_ttl=r.duration(t, "cache_ttl", 2.0),
        )


def _identity(r: _Reader, raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        r.error("identity", "must be a table of header = field")
        return ()
    pairs: list[tuple[str, str]] = []
    with r.section("identity"):
        for header, source in raw.items():
            if not _TOKEN.match(header):
                r.error(header, "is not a valid header name")
            elif not isinstance(source, str) or not (
                source in IDENTITY_FIELDS or source.startswith("/")
            ):
                r.error(header, f"must be one of {', '.join(IDENTITY_FIELDS)} or a JSON pointer")
            else:
                pairs.append((header, source))
    return tuple(pairs)


def _passwords(r: _Reader, raw: Mapping[str, Any]) -> PasswordConfig:
    allowed = ("time_cost", "memory_cost", "parallelism", "workers", "queue_limit")
    t = r.table(raw, "passwords", allowed)
    with r.section("passwords"):
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


def _log(r: _Reader, raw: dict[str, Any]) -> LogConfig:
    with r.section("log"):
        return LogConfig(level=r.choice(raw, "level", ("info", "debug", "warning", "error")))


_SECTIONS = (
    "server", "upstream", "store", "migration", "login", "profile", "logout",
    "session", "identity", "passwords", "log",
)  # fmt: skip

# Every documented key, so that a test can check docs/configuration.md names them all.
ALL_KEYS: tuple[str, ...] = (
    "server.listen", "server.max_body", "server.trusted_proxies",
    "upstream.url", "upstream.connect_timeout", "upstream.read_timeout", "upstream.pool_size",
    "upstream.max_answer",
    "store.url", "store.pool_min", "store.pool_max",
    "migration.mode", "migration.validate", "migration.requires_username", "migration.mode_poll",
    "login.path", "login.format", "login.identifier", "login.password", "login.success",
    "login.success.status", "login.success.cookie", "login.success.cookie_prefix",
    "login.success.json", "login.success.json_equals", "login.profile", "login.profile.json",
    "login.profile.fetch", "login.answer", "login.answer.redirect", "login.answer.next_param",
    "login.answer.json", "login.answer.status", "login.failure",
    "profile.legacy_id", "profile.email", "profile.username",
    "logout.path",
    "session.cookie", "session.secret", "session.max_age", "session.secure", "session.domain",
    "session.cache_ttl",
    "identity",
    "passwords.time_cost", "passwords.memory_cost", "passwords.parallelism", "passwords.workers",
    "passwords.queue_limit",
    "log.level",
)  # fmt: skip


def load_store_config(path: str | Path) -> tuple[StoreConfig, MigrationConfig]:
    """Read only ``[store]`` and ``[migration]``: what the store commands need (no secrets)."""
    raw = _read_toml(path)
    r = _Reader({})
    store = _store(r, r.table(raw, "store", ("url", "pool_min", "pool_max")))
    migration = _migration(r, raw)
    if r.errors:
        raise ConfigError(r.errors)
    return store, migration
