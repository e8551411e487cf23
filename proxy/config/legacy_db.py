"""[legacy_db]: the legacy app's own user table as a source (issue 17), read-only.

    [legacy_db]
    url = "env:LEGACY_DB_URL"       # postgresql://, mysql:// (MariaDB too), sqlite:///path
    pool_size = 4
    timeout = "5s"
    hash_column = "password_hash"   # the column holding the hash; never part of the profile

    [legacy_db.find_user]
    by_email = "SELECT id, email, username, password AS password_hash FROM users
                WHERE email = :email"
    by_username = "... WHERE username = :username"

    [legacy_db.list_users]          # for ``authshim import --from-db``, keyset-paged
    sql = "SELECT ... FROM users WHERE id > :after ORDER BY id LIMIT :limit"
    key = "id"                      # the column :after continues from
    start = 0                       # :after of the first page

Values are bound as parameters by the driver, never formatted into the SQL: ``:email``,
``:username``, ``:after`` and ``:limit`` are the only placeholders, rewritten once here into
each driver's own style (proxy/legacy_db/base.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxy.config.reader import Reader, Secret

LEGACY_DB_KEYS = ("url", "pool_size", "timeout", "hash_column", "find_user", "list_users")
FIND_KEYS = ("by_email", "by_username")
LIST_KEYS = ("sql", "key", "start")
SCHEMES = {"postgresql": "postgresql", "postgres": "postgresql", "mysql": "mysql",
           "mariadb": "mysql", "sqlite": "sqlite"}  # fmt: skip
PLACEHOLDER = re.compile(r"(?<![:\w]):(email|username|after|limit)\b")
# SECURITY: one SELECT (or WITH .. SELECT): the connection is read-only too, but a template
# that writes is a mistake to report at start, not at the first login.
_READING = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ListUsers:
    sql: str
    key: str = "id"
    start: int | str = 0


@dataclass(frozen=True, slots=True)
class LegacyDbConfig:
    """The legacy database: where, how many connections, how long, and what to ask it."""

    url: Secret
    driver: str  # postgresql, mysql or sqlite
    pool_size: int = 4
    timeout: float = 5.0
    hash_column: str = "password_hash"
    by_email: str | None = None
    by_username: str | None = None
    list_users: ListUsers | None = None


def read_legacy_db(r: Reader, doc: Mapping[str, Any]) -> LegacyDbConfig | None:
    """``[legacy_db]``, or None when it is absent."""
    if "legacy_db" not in doc:
        return None
    with r.table(doc, "legacy_db", LEGACY_DB_KEYS) as t:
        url = r.secret(t, "url")
        driver = ""
        if url is None or not url.value:
            r.error("url", "is required")
        else:
            driver = SCHEMES.get(urlsplit(url.value).scheme, "")
            if not driver:
                # The scheme only: the URL may carry a password.
                r.error("url", "must start with postgresql://, mysql:// or sqlite:///, got "
                        f"{urlsplit(url.value).scheme or 'no scheme'}://")  # fmt: skip
        pool_size = r.get(t, "pool_size", int, 4)
        if not 1 <= pool_size <= 100:
            r.error("pool_size", f"must be from 1 to 100, got {pool_size}")
        by_email = by_username = None
        if "find_user" in t:
            find = r.subtable(t, "find_user", FIND_KEYS) or {}
            with r.section("find_user"):
                by_email = _template(r, find, "by_email", ("email",))
                by_username = _template(r, find, "by_username", ("username",))
        listing = _list_users(r, t)
        if by_email is None and by_username is None and listing is None:
            r.error("", "needs find_user (by_email or by_username) or list_users")
        return LegacyDbConfig(
            url=url or Secret(""),
            driver=driver,
            pool_size=pool_size,
            timeout=r.duration(t, "timeout", 5.0),
            hash_column=r.get(t, "hash_column", str, "password_hash"),
            by_email=by_email,
            by_username=by_username,
            list_users=listing,
        )


def _list_users(r: Reader, t: Mapping[str, Any]) -> ListUsers | None:
    if "list_users" not in t:
        return None
    raw = r.subtable(t, "list_users", LIST_KEYS)
    if raw is None:
        return None
    with r.section("list_users"):
        sql = _template(r, raw, "sql", ("after", "limit"))
        start = raw.get("start", 0)
        if isinstance(start, bool) or not isinstance(start, int | str):
            r.error("start", "must be an integer or a string")
            start = 0
        key = r.get(raw, "key", str, "id")
    if sql is None:
        r.error("list_users.sql", "is required")
        return None
    return ListUsers(sql, key, start)


def _template(
    r: Reader, raw: Mapping[str, Any], name: str, needs: tuple[str, ...]
) -> str | None:
    sql = r.optional(raw, name)
    if sql is None:
        return None
    if not _READING.match(sql) or ";" in sql.rstrip().rstrip(";"):
        r.error(name, "must be one SELECT statement")
        return None
    found = set(PLACEHOLDER.findall(sql))
    missing = [f":{n}" for n in needs if n not in found]
    extra = [f":{n}" for n in sorted(found - set(needs))]
    if missing:
        r.error(name, f"must bind {', '.join(missing)}")
    if extra:
        r.error(name, f"has no value for {', '.join(extra)}")
    return sql if not (missing or extra) else None
