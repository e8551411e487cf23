"""The sections about where authshim runs: ``[server]``, ``[upstream]``, ``[store]``,
``[migration]`` and ``[log]``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxy.config.reader import Reader
from store.validation import USERNAME_CASES


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
    # A front controller's requests are read (up to this) to tell its logins from the rest.
    max_scan: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    pool_size: int = 100
    max_answer: int = 1024 * 1024
    # IIS and other Windows servers: /API/Login is /api/login (proxy/paths.py).
    case_insensitive_paths: bool = False


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
    # A migrated user's failed password is asked of the legacy app (changed there since?).
    recapture: bool = False
    # issue 15: how the legacy app folds usernames (store/validation.py USERNAME_CASES)
    username_case: str = "lower"


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"


SERVER_KEYS = (
    "listen", "max_body", "trusted_proxies", "public_url",
    "max_line_size", "max_field_size", "max_headers", "body_timeout", "max_scan",
)  # fmt: skip
UPSTREAM_KEYS = (
    "url", "connect_timeout", "read_timeout", "pool_size", "max_answer", "case_insensitive_paths",
)  # fmt: skip
STORE_KEYS = ("url", "pool_min", "pool_max")
MIGRATION_KEYS = (
    "mode", "validate", "requires_username", "mode_poll", "recapture", "username_case",
)  # fmt: skip
LOG_KEYS = ("level",)


def read_server(r: Reader, doc: Mapping[str, Any]) -> ServerConfig:
    with r.table(doc, "server", SERVER_KEYS) as t:
        host, port = r.listen(t, "127.0.0.1:8080", override="AUTHSHIM_LISTEN")
        proxies = r.get(t, "trusted_proxies", list, [])
        if not all(isinstance(p, str) for p in proxies):
            r.error("trusted_proxies", "must be a list of addresses")
            proxies = []
        public_url = r.get(t, "public_url", str, "").rstrip("/") or None
        parts = urlsplit(public_url or "")
        if public_url and (
            parts.scheme not in ("http", "https") or not parts.hostname or parts.path
        ):
            example = "'https://www.example.com'"
            r.error("public_url", f"must be an origin such as {example}, got {public_url!r}")
            public_url = None
        return ServerConfig(
            host, port, r.positive(t, "max_body", 64 * 1024), tuple(proxies), public_url,
            max_line_size=r.positive(t, "max_line_size", 8190),
            max_field_size=r.positive(t, "max_field_size", 16 * 1024),
            max_headers=r.positive(t, "max_headers", 128),
            body_timeout=r.duration(t, "body_timeout", 10.0),
            max_scan=r.positive(t, "max_scan", 16 * 1024 * 1024),
        )  # fmt: skip


def read_upstream(r: Reader, doc: Mapping[str, Any]) -> UpstreamConfig:
    with r.table(doc, "upstream", UPSTREAM_KEYS) as t:
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
            case_insensitive_paths=r.get(t, "case_insensitive_paths", bool, False),
        )


def read_store(r: Reader, doc: Mapping[str, Any]) -> StoreConfig:
    with r.table(doc, "store", STORE_KEYS) as t:
        url = r.get(t, "url", str, "sqlite:///./authshim.db")
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            r.error("url", f"must start with sqlite:/// or postgresql://, got {url!r}")
        elif not url.startswith("sqlite:") and not _installed("asyncpg"):
            r.error("url", "a PostgreSQL store needs asyncpg: pip install 'authshim[postgres]'")
        pool_min, pool_max = r.positive(t, "pool_min", 2), r.positive(t, "pool_max", 10)
        if pool_min > pool_max:
            r.error("pool_min", "must not be greater than pool_max")
        return StoreConfig(url, pool_min, pool_max)


def _installed(module: str) -> bool:
    """Whether ``module`` imports: the optional store driver, checked before anything starts."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def read_migration(r: Reader, doc: Mapping[str, Any]) -> MigrationConfig:
    with r.table(doc, "migration", MIGRATION_KEYS) as t:
        return MigrationConfig(
            mode=r.choice(t, "mode", ("migrate", "cutover")),
            validate=r.get(t, "validate", bool, True),
            requires_username=r.get(t, "requires_username", bool, False),
            mode_poll=r.duration(t, "mode_poll", 2.0),
            recapture=r.get(t, "recapture", bool, False),
            username_case=r.choice(t, "username_case", USERNAME_CASES),
        )


def read_log(r: Reader, doc: Mapping[str, Any]) -> LogConfig:
    with r.table(doc, "log", LOG_KEYS) as t:
        return LogConfig(level=r.choice(t, "level", ("info", "debug", "warning", "error")))
