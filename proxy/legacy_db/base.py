"""The one small interface to a legacy database, and what its rows become.

A driver module (``postgres``, ``mysql``, ``sqlite``) implements ``LegacyDb``: ``fetch`` one
template with its named values bound, on a read-only connection from a bounded pool, within
the timeout. Everything else (which template, paging, turning rows into profiles and import
records) is here, written once.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.config.legacy_db import PLACEHOLDER, LegacyDbConfig

DEFAULT_PAGE = 2000


class LegacyDb(Protocol):
    """A read-only pool on the legacy database."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, sql: str, values: Mapping[str, object]) -> list[dict[str, Any]]:
        """The rows ``sql`` (a template as configured) selects with ``values`` bound.

        Raises:
            LegacyDbUnavailable: no connection, or the database refused the query.
            LegacyDbTimeout: no answer within the configured timeout.
        """
        ...


def compile_template(sql: str, style: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``:name`` placeholders in a driver's style, and the names in order.

    ``style`` is ``dollar`` ($1, asyncpg), ``format`` (%s, aiomysql: a literal % doubled) or
    ``qmark`` (?, sqlite). Only the placeholders are rewritten; values are bound by the driver.
    """
    names: list[str] = []
    if style == "format":
        sql = sql.replace("%", "%%")

    def place(match: Any) -> str:
        names.append(match.group(1))
        if style == "dollar":
            return f"${len(names)}"
        return "%s" if style == "format" else "?"

    return PLACEHOLDER.sub(place, sql), tuple(names)


@dataclass(frozen=True, slots=True)
class Row:
    """A user as the legacy database holds them: their profile (JSON values) and hash."""

    profile: dict[str, Any]
    password_hash: str | None


def to_row(raw: Mapping[str, Any], hash_column: str) -> Row:
    """Split a selected row into a JSON profile and the hash, which never joins the profile."""
    stored = raw.get(hash_column)
    if isinstance(stored, bytes | bytearray | memoryview):
        stored = bytes(stored).decode("ascii", "replace")
    profile = {name: json_value(value) for name, value in raw.items() if name != hash_column}
    return Row(profile, stored if isinstance(stored, str) and stored else None)


def json_value(value: Any) -> Any:
    """A column's value as JSON can hold it (dates ISO 8601, decimals as text, bytes base64)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def import_record(row: Row, legacy_id: object, email: object, username: object) -> dict[str, Any]:
    """``row`` as an Auth0 bulk-import object, the shape ``store.importing`` reads."""
    record: dict[str, Any] = {
        "user_id": None if legacy_id is None else str(legacy_id),
        "email": email,
        "username": username,
        "user_metadata": row.profile,
    }
    if row.profile.get("blocked") is True:
        record["blocked"] = True
    if row.password_hash is not None:
        # Self-describing strings (Django, phpass, bcrypt, $wp$, Drupal, ASP.NET): any name.
        record["custom_password_hash"] = {
            "algorithm": "legacy_db", "hash": {"value": row.password_hash}
        }  # fmt: skip
    return record


class Source:
    """The configured templates over a ``LegacyDb``: find one user, or list them all."""

    def __init__(self, config: LegacyDbConfig, db: LegacyDb) -> None:
        self.config = config
        self.db = db
        self._opened = False
        self._opening = asyncio.Lock()

    async def fetch(self, sql: str, values: Mapping[str, object]) -> list[dict[str, Any]]:
        """``db.fetch``, opening the pool at the first call: the proxy starts, and serves its
        migrated users, while the legacy database is down."""
        if not self._opened:
            async with self._opening:
                if not self._opened:
                    await self.db.open()
                    self._opened = True
        return await self.db.fetch(sql, values)

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self.db.close()

    async def find_user(self, field: str, value: str) -> list[Row]:
        """The rows ``find_user.by_<field>`` selects for ``value`` (the caller wants one)."""
        sql = self.config.by_email if field == "email" else self.config.by_username
        if sql is None:
            raise ValueError(f"legacy_db.find_user.by_{field} is not configured")
        rows = await self.fetch(sql, {field: value})
        return [to_row(raw, self.config.hash_column) for raw in rows]

    async def list_users(self, page: int = DEFAULT_PAGE) -> AsyncIterator[list[Row]]:
        """Every user, a page at a time, each page continuing after the last one's key."""
        listing = self.config.list_users
        if listing is None:
            raise ValueError("legacy_db.list_users is not configured")
        after: object = listing.start
        while True:
            rows = await self.fetch(listing.sql, {"after": after, "limit": page})
            if not rows:
                return
            if listing.key not in rows[-1]:
                raise ValueError(f"legacy_db.list_users.key: the rows have no {listing.key!r}")
            after = rows[-1][listing.key]
            yield [to_row(raw, self.config.hash_column) for raw in rows]
            if len(rows) < page:
                return
