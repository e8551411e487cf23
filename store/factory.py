"""Build the Store a URL names: ``sqlite:///path`` or ``postgresql://...?schema=name``."""

from __future__ import annotations

import importlib
import os
import re
from urllib.parse import parse_qsl, urlencode

from store.base import Store
from store.errors import StoreNotFound
from store.sqlite import SQLiteStore

_POSTGRES_SCHEMES = ("postgresql", "postgres")
# SECURITY: the schema name ends up quoted in DDL and search_path; allow identifiers only.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def create_store(url: str, *, pool_min: int = 2, pool_max: int = 10) -> Store:
    """Return an unopened Store for ``url``; the pool sizes only apply to PostgreSQL.

    Raises:
        ValueError: the scheme is not ``sqlite``, ``postgresql`` or ``postgres``, or the
            rest of the URL is malformed.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("store URL has no scheme: expected sqlite:/// or postgresql://")
    if scheme == "sqlite":
        return SQLiteStore(sqlite_path(url))
    if scheme in _POSTGRES_SCHEMES:
        dsn, schema = split_schema(url)
        # Imported here: asyncpg is an optional dependency, needed only for this backend.
        try:
            module = importlib.import_module("store.postgres")
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise ImportError(
                "the PostgreSQL store needs asyncpg: pip install 'authshim[postgres]'"
            ) from exc
        store: Store = module.PostgresStore(
            dsn, schema=schema, pool_min=pool_min, pool_max=pool_max
        )
        return store
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite or postgresql")


async def require_existing(url: str) -> None:
    """Raise ``StoreNotFound`` unless the store ``url`` names was created before.

    Opening a store creates it (the SQLite file and its folders, a PostgreSQL schema), which
    is right for ``serve`` and wrong for a command that reads or changes a store: there, a
    mistyped path must not quietly become a new, empty store.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        path = sqlite_path(url)
        # A stat on a local file, before any loop work matters: a command, not a request.
        if path != ":memory:" and not os.path.isfile(path):  # noqa: ASYNC240
            raise StoreNotFound(f"no store at {url}: the file {path} does not exist")
    elif scheme in _POSTGRES_SCHEMES:
        dsn, schema = split_schema(url)
        probe = importlib.import_module("store.postgres.probe")
        if not await probe.schema_exists(dsn, schema):
            raise StoreNotFound(f"no store in PostgreSQL schema {schema!r} of that database")
    else:
        create_store(url)  # raises ValueError naming the unsupported scheme


def sqlite_path(url: str) -> str:
    """Return the file path of ``sqlite:///relative`` or ``sqlite:////absolute``."""
    _, _, rest = url.partition("://")
    # Three slashes: an empty host, then the path (relative unless it starts with a fourth).
    if not rest.startswith("/") or len(rest) == 1:
        raise ValueError(f"SQLite store URL must be sqlite:///path, got {url!r}")
    return rest[1:]


def split_schema(url: str) -> tuple[str, str]:
    """Split ``?schema=NAME`` off a PostgreSQL URL; return ``(dsn, schema)``.

    Other query parameters (``sslmode`` and the like) stay in the DSN for asyncpg.
    """
    base, _, query = url.partition("?")
    schema = "public"
    kept: list[tuple[str, str]] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "schema":
            schema = value
        else:
            kept.append((key, value))
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"PostgreSQL schema must be an identifier, got {schema!r}")
    return (f"{base}?{urlencode(kept)}" if kept else base), schema
