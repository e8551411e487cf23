"""The TOML config, parsed once at start into frozen dataclasses.

Every problem is collected and reported together, each naming its key (``login[1].success``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

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
    public_url: str | None = None
    # hardening issue: request-line and header limits (llhttp), and a slow body's deadline
    max_line_size: int = 8190
    max_field_size: int = 16 * 1024
    max_headers: int = 128
    body_timeout: float = 10.0


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
    lookup: bool = False  # the [lookup] by the submitted identifier
    token: str = "/token"  # with fetch: the answer's bearer token, such as "/access_token"


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
    refresh_on_login: bool = False


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
    previous_secrets: tuple[Secret, ...] = ()  # still verified, never signed with (rotation)


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


# --- look-up, reset, mail, sign-up, password change, policy (reset/sign-up issue) ---

DEFAULT_MAIL_SUBJECT = "Reset your password"
DEFAULT_MAIL_BODY = (
    "Someone asked to reset the password of the account with this address.\n\n"
    "To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
    "If it was not you, ignore this mail: your password stays as it is.\n"
)


@dataclass(frozen=True, slots=True)
class LookupConfig:
    """The legacy look-up: a user's profile by email or by username (``{email}``/``{username}``)."""

    by_email: str | None = None
    by_username: str | None = None
    method: str = "GET"
    headers: tuple[tuple[str, Secret], ...] = ()
    timeout: float = 5.0
    pointer: str = ""


@dataclass(frozen=True, slots=True)
class ResetConfig:
    request_path: str
    format: str
    email: str
    link: str
    answer: Answer
    done: Answer
    expires: float = 1800.0
    confirm_path: str | None = None
    template: str | None = None
    # name=value pairs the request's query must hold (wp-login.php is the login route too)
    request_query: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MailConfig:
    transport: str
    sender: str  # the key is ``from``, a Python keyword
    folder: str | None = None
    host: str = "127.0.0.1"
    port: int = 587
    starttls: bool = True
    tls: bool = False
    username: str | None = None
    password: Secret | None = None
    subject: str = DEFAULT_MAIL_SUBJECT
    body: str = DEFAULT_MAIL_BODY
    timeout: float = 30.0
    poll: float = 2.0
    retry_min: float = 5.0
    retry_max: float = 600.0


@dataclass(frozen=True, slots=True)
class SignupConfig:
    path: str
    format: str
    handler: str
    email: str
    password: str
    answer: Answer
    conflict: Answer
    username: str | None = None
    fields: tuple[str, ...] = ()
    success: SuccessRules | None = None
    profile: ProfileSource | None = None


@dataclass(frozen=True, slots=True)
class PasswordChangeConfig:
    path: str
    format: str
    old: str
    new: str
    answer: Answer
    failure: Answer
    confirm: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    min_length: int = 8
    max_length: int = 1024


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener (API, dashboard, metrics); see docs/configuration.md."""

    host: str = "127.0.0.1"
    port: int = 8081
    token: Secret | None = None
    readiness_days: int = 30


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
    admin: AdminConfig = AdminConfig()
    lookup: LookupConfig | None = None
    reset: ResetConfig | None = None
    mail: MailConfig | None = None
    signup: SignupConfig | None = None
    password_change: PasswordChangeConfig | None = None
    policy: PolicyConfig = PolicyConfig()
    limits: LimitsConfig = LimitsConfig()


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
        server=_server(r, r.table(raw, "server", _SERVER_KEYS)),
        upstream=_upstream(r, raw),
        store=_store(r, r.table(raw, "store", ("url", "pool_min", "pool_max"))),
        migration=_migration(r, raw),
        logins=_logins(r, raw.get("login", [])),
        profile=_profile_map(r, r.table(raw, "profile", _PROFILE_KEYS)),
        logout=_logout(r, r.table(raw, "logout", ("path",))),
        session=_session(r, raw),
        identity=_identity(r, raw.get("identity", {})),
        passwords=_passwords(r, raw),
        log=_log(r, r.table(raw, "log", ("level",))),
        admin=_admin(r, r.table(raw, "admin", _ADMIN_KEYS)),
        lookup=_lookup(r, raw),
        reset=_reset(r, raw),
        mail=_mail(r, raw),
        signup=_signup(r, raw),
        password_change=_password_change(r, raw),
        policy=_policy(r, raw),
        limits=_limits(r, raw),
    )
    _check_features(r, config)
    if r.errors:
        raise ConfigError(r.errors)
    return config


_SERVER_KEYS = (
    "listen", "max_body", "trusted_proxies", "public_url",
    "max_line_size", "max_field_size", "max_headers", "body_timeout",
)  # fmt: skip


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
        public_url = r.get(raw, "public_url", str, "").rstrip("/") or None
        parts = urlsplit(public_url or "")
        if public_url and (
            parts.scheme not in ("http", "https") or not parts.hostname or parts.path
        ):
            example = "'https://www.example.com'"
            r.error("public_url", f"must be an origin such as {example}, got {public_url!r}")
            public_url = None
        return ServerConfig(
            host, port, r.positive(raw, "max_body", 64 * 1024), tuple(proxies), public_url,
            max_line_size=r.positive(raw, "max_line_size", 8190),
            max_field_size=r.positive(raw, "max_field_size", 16 * 1024),
            max_headers=r.positive(raw, "max_headers", 128),
            body_timeout=r.duration(raw, "body_timeout", 10.0),
        )  # fmt: skip


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
    t = _sub(r, raw, "profile", ("json", "fetch", "lookup", "token"))
    if t is None:
        return ProfileSource()
    with r.section("profile"):
        source = ProfileSource(
            json=r.pointer(t, "json", None),
            fetch=r.path(t, "fetch", required=False),
            lookup=r.get(t, "lookup", bool, False),
            token=r.pointer(t, "token", "/token") or "/token",
        )
        if [source.json is not None, source.fetch is not None, source.lookup].count(True) != 1:
            r.error("", "needs exactly one of json (a pointer into the answer), fetch (a path) "
                    "or lookup = true (the [lookup])")  # fmt: skip
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


_PROFILE_KEYS = ("legacy_id", "email", "username", "refresh_on_login")


def _profile_map(r: _Reader, raw: dict[str, Any]) -> ProfileMap:
    with r.section("profile"):
        return ProfileMap(
            legacy_id=r.pointer(raw, "legacy_id", "/id"),
            email=r.pointer(raw, "email", "/email"),
            username=r.pointer(raw, "username", "/username"),
            refresh_on_login=r.get(raw, "refresh_on_login", bool, False),
        )


def _logout(r: _Reader, raw: dict[str, Any]) -> LogoutConfig:
    with r.section("logout"):
        return LogoutConfig(path=r.path(raw, "path", required=False))


def _session(r: _Reader, raw: Mapping[str, Any]) -> SessionConfig:
    allowed = ("cookie", "secret", "max_age", "secure", "domain", "cache_ttl", "previous_secrets")
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
            previous_secrets=_previous_secrets(r, t),
        )


def _previous_secrets(r: _Reader, t: dict[str, Any]) -> tuple[Secret, ...]:
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


_ADMIN_KEYS = ("listen", "token", "readiness_days")
MIN_ADMIN_TOKEN_LENGTH = 16


def _admin(r: _Reader, raw: dict[str, Any]) -> AdminConfig:
    with r.section("admin"):
        host, port = "127.0.0.1", 8081
        try:
            host, port = parse_listen(r.get(raw, "listen", str, "127.0.0.1:8081"))
        except ValueError as exc:
            r.error("listen", str(exc))
        token = r.secret(raw, "token") if "token" in raw else None
        if token is not None and len(token.value) < MIN_ADMIN_TOKEN_LENGTH:
            r.error("token", f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters long")
        # SECURITY: an admin API reachable from other hosts must never be open.
        if token is None and not is_loopback(host):
            r.error("token", f"is required when admin.listen is not a loopback address ({host})")
        return AdminConfig(host, port, token, r.positive(raw, "readiness_days", 30))


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- look-up, reset, mail, sign-up, password change, policy (reset/sign-up issue) ---

_LOOKUP_KEYS = ("by_email", "by_username", "method", "headers", "timeout", "pointer")
_RESET_KEYS = (
    "request_path", "format", "email", "answer", "link", "expires", "done", "confirm_path",
    "template", "request_query",
)  # fmt: skip
_MAIL_KEYS = (
    "transport", "folder", "from", "host", "port", "starttls", "tls", "username", "password",
    "subject", "body", "timeout", "poll", "retry_min", "retry_max",
)  # fmt: skip
_SIGNUP_KEYS = (
    "path", "format", "handler", "email", "username", "password", "fields", "answer",
    "conflict", "success", "profile",
)  # fmt: skip
_PASSWORD_CHANGE_KEYS = ("path", "format", "old", "new", "confirm", "answer", "failure")
_OK = Answer(json={"ok": True}, status=200)


def _optional_answer(r: _Reader, raw: dict[str, Any], name: str, default: Answer) -> Answer:
    return _answer(r, raw, name, default_status=default.status) if name in raw else default


def _url_template(r: _Reader, raw: dict[str, Any], name: str, placeholder: str) -> str | None:
    value = r.get(raw, name, str, "") or None
    if value is not None and (
        placeholder not in value or urlsplit(value).scheme not in ("http", "https")
    ):
        r.error(name, f"must be an http(s):// URL containing {placeholder}, got {value!r}")
        return None
    return value


def _lookup(r: _Reader, raw: Mapping[str, Any]) -> LookupConfig | None:
    if "lookup" not in raw:
        return None
    t = r.table(raw, "lookup", _LOOKUP_KEYS)
    with r.section("lookup"):
        by_email = _url_template(r, t, "by_email", "{email}")
        by_username = _url_template(r, t, "by_username", "{username}")
        if not (t.get("by_email") or t.get("by_username")):
            r.error("", "needs by_email or by_username (or both)")
        headers: list[tuple[str, Secret]] = []
        raw_headers = r.get(t, "headers", dict, {})
        with r.section("headers"):
            for name in raw_headers:
                if not _TOKEN.match(name):
                    r.error(name, "is not a valid header name")
                elif (value := r.secret(raw_headers, name)) is not None:
                    headers.append((name, value))
        return LookupConfig(
            by_email=by_email,
            by_username=by_username,
            method=r.choice(t, "method", ("GET", "POST")),
            headers=tuple(headers),
            timeout=r.duration(t, "timeout", 5.0),
            pointer=r.pointer(t, "pointer", "") or "",
        )


def _reset(r: _Reader, raw: Mapping[str, Any]) -> ResetConfig | None:
    if "reset" not in raw:
        return None
    t = r.table(raw, "reset", _RESET_KEYS)
    with r.section("reset"):
        link = r.get(t, "link", str, "")
        if "{token}" not in link or urlsplit(link).scheme not in ("http", "https"):
            r.error("link", "must be an http(s):// URL containing {token}, such as "
                    "'https://example.com/.authshim/reset?token={token}'")  # fmt: skip
        template = r.get(t, "template", str, "") or None
        if template is not None and not Path(template).is_file():
            r.error("template", f"no such file: {template!r}")
        expires = r.duration(t, "expires", 1800.0)
        if expires <= 0:
            r.error("expires", "must be greater than 0")
        query = r.get(t, "request_query", str, "")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
        except ValueError:
            pairs = []
        if query and not pairs:
            r.error("request_query", f"must be name=value pairs joined by &, such as "
                    f"'action=lostpassword', got {query!r}")  # fmt: skip
        return ResetConfig(
            request_path=r.path(t, "request_path", required=True) or "/",
            format=r.choice(t, "format", ("form", "json")),
            email=_field_name(r, t, "email"),
            link=link,
            answer=_optional_answer(r, t, "answer", _OK),
            done=_optional_answer(r, t, "done", _OK),
            expires=expires,
            confirm_path=r.path(t, "confirm_path", required=False),
            template=template,
            request_query=tuple(pairs),
        )


def _mail(r: _Reader, raw: Mapping[str, Any]) -> MailConfig | None:
    if "mail" not in raw:
        return None
    t = r.table(raw, "mail", _MAIL_KEYS)
    with r.section("mail"):
        transport = r.choice(t, "transport", ("smtp", "file"))
        folder = r.get(t, "folder", str, "") or None
        if transport == "file" and folder is None:
            r.error("folder", "is required with transport = 'file'")
        sender = r.get(t, "from", str, "")
        if "@" not in sender:
            r.error("from", f"must be the sender's address, such as 'noreply@example.com', "
                    f"got {sender!r}")  # fmt: skip
        host = r.get(t, "host", str, "")
        if transport == "smtp" and not host:
            r.error("host", "is required with transport = 'smtp'")
        tls = r.get(t, "tls", bool, False)
        starttls = r.get(t, "starttls", bool, not tls)
        if tls and starttls:
            r.error("starttls", "cannot be combined with tls (TLS from the first byte)")
        port = r.get(t, "port", int, 465 if tls else 587)
        if not 0 < port < 65536:
            r.error("port", f"must be a TCP port, got {port}")
        retry_min, retry_max = r.duration(t, "retry_min", 5.0), r.duration(t, "retry_max", 600.0)
        if not 0 < retry_min <= retry_max:
            r.error("retry_min", "must be greater than 0 and at most retry_max")
        return MailConfig(
            transport=transport,
            sender=sender,
            folder=folder,
            host=host or "127.0.0.1",
            port=port,
            starttls=starttls,
            tls=tls,
            username=r.get(t, "username", str, "") or None,
            password=r.secret(t, "password") if "password" in t else None,
            subject=r.get(t, "subject", str, DEFAULT_MAIL_SUBJECT),
            body=r.get(t, "body", str, DEFAULT_MAIL_BODY),
            timeout=r.duration(t, "timeout", 30.0),
            poll=r.duration(t, "poll", 2.0),
            retry_min=retry_min,
            retry_max=retry_max,
        )


def _signup(r: _Reader, raw: Mapping[str, Any]) -> SignupConfig | None:
    if "signup" not in raw:
        return None
    t = r.table(raw, "signup", _SIGNUP_KEYS)
    with r.section("signup"):
        handler = r.choice(t, "handler", ("local", "upstream"))
        fields = r.get(t, "fields", list, [])
        if not all(isinstance(f, str) and f for f in fields):
            r.error("fields", "must be a list of field names")
            fields = []
        upstream = handler == "upstream"
        for name in ("success", "profile"):
            if name in t and not upstream:
                r.error(name, "only applies with handler = 'upstream'")
        conflict = Answer(json={"error": "this email or username is taken"}, status=409)
        return SignupConfig(
            path=r.path(t, "path", required=True) or "/",
            format=r.choice(t, "format", ("form", "json")),
            handler=handler,
            email=_field_name(r, t, "email"),
            password=_field_name(r, t, "password"),
            answer=_optional_answer(r, t, "answer", _OK),
            conflict=_optional_answer(r, t, "conflict", conflict),
            username=r.get(t, "username", str, "") or None,
            fields=tuple(fields),
            success=_success(r, t.get("success")) if upstream else None,
            profile=_profile_source(r, t.get("profile")) if upstream else None,
        )


def _password_change(r: _Reader, raw: Mapping[str, Any]) -> PasswordChangeConfig | None:
    if "password_change" not in raw:
        return None
    t = r.table(raw, "password_change", _PASSWORD_CHANGE_KEYS)
    refused = Answer(json={"error": "the password was not changed"}, status=401)
    with r.section("password_change"):
        return PasswordChangeConfig(
            path=r.path(t, "path", required=True) or "/",
            format=r.choice(t, "format", ("form", "json")),
            old=_field_name(r, t, "old"),
            new=_field_name(r, t, "new"),
            answer=_optional_answer(r, t, "answer", _OK),
            failure=_optional_answer(r, t, "failure", refused),
            confirm=r.get(t, "confirm", str, "") or None,
        )


def _policy(r: _Reader, raw: Mapping[str, Any]) -> PolicyConfig:
    t = r.table(raw, "policy", ("min_length", "max_length"))
    with r.section("policy"):
        policy = PolicyConfig(r.positive(t, "min_length", 8), r.positive(t, "max_length", 1024))
        if policy.min_length > policy.max_length:
            r.error("min_length", "must not be greater than max_length")
        return policy


_LIMITS_KEYS = (
    "enabled", "login_account_ip", "login_ip", "login_window", "login_block", "login_block_max",
    "reset_ip", "reset_address", "signup_ip", "signup_address", "rate_window",
)  # fmt: skip


def _limits(r: _Reader, raw: Mapping[str, Any]) -> LimitsConfig:
    t = r.table(raw, "limits", _LIMITS_KEYS)
    d = LimitsConfig()
    with r.section("limits"):
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


def _check_features(r: _Reader, config: Config) -> None:
    """What one section needs from another, and intercepted paths that collide."""
    if config.reset is not None and config.mail is None:
        r.error("reset", "needs [mail] to send its links")
    migrate = config.migration.mode == "migrate"
    if config.signup and config.signup.handler == "local" and migrate and config.lookup is None:
        r.error("signup.handler", "'local' in mode migrate needs [lookup], so that nobody signs "
                "up again under a legacy user's email or username")  # fmt: skip
    if config.profile.refresh_on_login and config.lookup is None:
        r.error("profile.refresh_on_login", "needs [lookup]")
    for i, route in enumerate(config.logins):
        if route.profile.lookup and config.lookup is None:
            r.error(f"login[{i}].profile.lookup", "needs [lookup]")
    paths: dict[str, str] = {_fold_path(route.path): "login" for route in config.logins}
    for key, path in (
        ("reset.request_path", config.reset and config.reset.request_path),
        ("reset.confirm_path", config.reset and config.reset.confirm_path),
        ("signup.path", config.signup and config.signup.path),
        ("password_change.path", config.password_change and config.password_change.path),
    ):
        if path:
            folded = _fold_path(path)
            if key == "reset.request_path" and config.reset and config.reset.request_query:
                folded += "?" + urlencode(config.reset.request_query)  # told apart by its query
            if folded in paths:
                r.error(key, f"{path} is already intercepted by {paths[folded]}")
            paths[folded] = key


def _fold_path(path: str) -> str:
    """Fold ``//`` and a trailing ``/`` as the route table does."""
    return re.sub(r"/{2,}", "/", path).rstrip("/") or "/"


_SECTIONS = (
    "server", "upstream", "store", "migration", "login", "profile", "logout",
    "session", "identity", "passwords", "log", "admin",
    "lookup", "reset", "mail", "signup", "password_change", "policy", "limits",
)  # fmt: skip

# Every documented key, so that a test can check docs/configuration.md names them all.
ALL_KEYS: tuple[str, ...] = (
    "server.listen", "server.max_body", "server.trusted_proxies", "server.public_url",
    "upstream.url", "upstream.connect_timeout", "upstream.read_timeout", "upstream.pool_size",
    "upstream.max_answer",
    "store.url", "store.pool_min", "store.pool_max",
    "migration.mode", "migration.validate", "migration.requires_username", "migration.mode_poll",
    "login.path", "login.format", "login.identifier", "login.password", "login.success",
    "login.success.status", "login.success.cookie", "login.success.cookie_prefix",
    "login.success.json", "login.success.json_equals", "login.profile", "login.profile.json",
    "login.profile.fetch", "login.profile.lookup", "login.profile.token",
    "login.answer", "login.answer.redirect", "login.answer.next_param",
    "login.answer.json", "login.answer.status", "login.failure",
    "profile.legacy_id", "profile.email", "profile.username",
    "logout.path",
    "session.cookie", "session.secret", "session.max_age", "session.secure", "session.domain",
    "session.cache_ttl",
    "identity",
    "passwords.time_cost", "passwords.memory_cost", "passwords.parallelism", "passwords.workers",
    "passwords.queue_limit",
    "log.level",
    "admin.listen", "admin.token", "admin.readiness_days",
    "profile.refresh_on_login",
    "lookup.by_email", "lookup.by_username", "lookup.method", "lookup.headers",
    "lookup.timeout", "lookup.pointer",
    "reset.request_path", "reset.format", "reset.email", "reset.answer", "reset.link",
    "reset.expires", "reset.done", "reset.confirm_path", "reset.template", "reset.request_query",
    "mail.transport", "mail.folder", "mail.from", "mail.host", "mail.port", "mail.starttls",
    "mail.tls", "mail.username", "mail.password", "mail.subject", "mail.body", "mail.timeout",
    "mail.poll", "mail.retry_min", "mail.retry_max",
    "signup.path", "signup.format", "signup.handler", "signup.email", "signup.username",
    "signup.password", "signup.fields", "signup.answer", "signup.conflict", "signup.success",
    "signup.profile",
    "password_change.path", "password_change.format", "password_change.old",
    "password_change.new", "password_change.confirm", "password_change.answer",
    "password_change.failure",
    "policy.min_length", "policy.max_length",
    "server.max_line_size", "server.max_field_size", "server.max_headers", "server.body_timeout",
    "session.previous_secrets",
    "limits.enabled", "limits.login_account_ip", "limits.login_ip", "limits.login_window",
    "limits.login_block", "limits.login_block_max", "limits.reset_ip", "limits.reset_address",
    "limits.signup_ip", "limits.signup_address", "limits.rate_window",
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


def load_readiness_days(path: str | Path) -> int:
    """Read only ``admin.readiness_days`` (no secrets): what ``authshim stats`` needs."""
    raw = _read_toml(path)
    r = _Reader({})
    admin = r.table(raw, "admin", _ADMIN_KEYS)
    with r.section("admin"):
        days = r.positive(admin, "readiness_days", 30)
    if r.errors:
        raise ConfigError(r.errors)
    return days
