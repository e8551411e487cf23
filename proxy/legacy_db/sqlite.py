"""The SQLite driver (aiosqlite): the file opened read-only (``mode=ro``), one connection
(and so one thread) per pool slot."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiosqlite

from proxy.config.legacy_db import LegacyDbConfig
from proxy.legacy_db.base import compile_template
from proxy.legacy_db.errors import LegacyDbTimeout, LegacyDbUnavailable


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///relative`` or ``sqlite:////absolute``."""
    parts = urlsplit(url)
    return (parts.netloc + parts.path)[1:] if parts.path.startswith("/") else parts.path


class SqliteDb:
    """A few read-only aiosqlite connections to the legacy database's file."""

    def __init__(self, config: LegacyDbConfig) -> None:
        self._config = config
        # SECURITY: mode=ro: a template that writes fails in SQLite too (and no file is made).
        self._path = os.path.abspath(sqlite_path(config.url.value))
        self._uri = f"file:{quote(self._path)}?mode=ro"
        self._free: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []
        self._sql: dict[str, tuple[str, tuple[str, ...]]] = {}

    async def open(self) -> None:
        uri = self._uri
        # Checked first: aiosqlite stops the thread of a failed connect without waiting for it,
        # and the thread then outlives its event loop.
        if not await asyncio.to_thread(os.path.isfile, self._path):
            raise LegacyDbUnavailable(f"legacy database: no file {self._path}")
        try:
            for _ in range(self._config.pool_size):
                conn = await aiosqlite.connect(uri, uri=True, timeout=self._config.timeout)
                conn.row_factory = sqlite3.Row
                self._all.append(conn)
                self._free.put_nowait(conn)
        except sqlite3.Error as exc:
            await self.close()
            raise LegacyDbUnavailable(f"legacy database: {type(exc).__name__}") from None

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()
        self._free = asyncio.Queue()

    async def fetch(self, sql: str, values: Mapping[str, object]) -> list[dict[str, Any]]:
        if not self._all:
            raise LegacyDbUnavailable("the legacy database is not open")
        query, names = self._sql.get(sql) or self._sql.setdefault(
            sql, compile_template(sql, "qmark")
        )
        timeout = self._config.timeout
        try:
            async with asyncio.timeout(timeout):
                conn = await self._free.get()
                try:
                    async with conn.execute(query, tuple(values[n] for n in names)) as cursor:
                        rows = await cursor.fetchall()
                finally:
                    self._free.put_nowait(conn)
        except TimeoutError:
            raise LegacyDbTimeout(f"no answer within {timeout:g}s") from None
        except sqlite3.Error as exc:
            raise LegacyDbUnavailable(f"legacy database: {type(exc).__name__}") from None
        return [dict(row) for row in rows]
