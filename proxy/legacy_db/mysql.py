"""The MySQL and MariaDB driver (aiomysql): every session read-only, autocommit."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql

from proxy.config.legacy_db import LegacyDbConfig
from proxy.legacy_db.base import compile_template
from proxy.legacy_db.errors import LegacyDbTimeout, LegacyDbUnavailable


class MysqlDb:
    """A bounded aiomysql pool on the legacy database."""

    def __init__(self, config: LegacyDbConfig) -> None:
        self._config = config
        self._pool: aiomysql.Pool | None = None
        self._sql: dict[str, tuple[str, tuple[str, ...]]] = {}

    async def open(self) -> None:
        url = urlsplit(self._config.url.value)
        try:
            async with asyncio.timeout(self._config.timeout):
                self._pool = await aiomysql.create_pool(
                    host=url.hostname or "127.0.0.1", port=url.port or 3306,
                    user=unquote(url.username or "root"), password=unquote(url.password or ""),
                    db=url.path.lstrip("/"), minsize=1, maxsize=self._config.pool_size,
                    connect_timeout=self._config.timeout, autocommit=True, charset="utf8mb4",
                    # SECURITY: a template that writes fails in the database too.
                    init_command="SET SESSION TRANSACTION READ ONLY",
                    cursorclass=aiomysql.DictCursor,
                )  # fmt: skip
        except TimeoutError:
            raise LegacyDbTimeout("no connection to the legacy database in time") from None
        except (OSError, pymysql.MySQLError) as exc:
            raise LegacyDbUnavailable(f"legacy database: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def fetch(self, sql: str, values: Mapping[str, object]) -> list[dict[str, Any]]:
        if self._pool is None:
            raise LegacyDbUnavailable("the legacy database is not open")
        query, names = self._sql.get(sql) or self._sql.setdefault(
            sql, compile_template(sql, "format")
        )
        timeout = self._config.timeout
        conn = None
        try:
            async with asyncio.timeout(timeout):
                conn = await self._pool.acquire()
                async with conn.cursor() as cursor:
                    await cursor.execute(query, tuple(values[n] for n in names))
                    rows: list[dict[str, Any]] = list(await cursor.fetchall())
        except TimeoutError:
            if conn is not None:
                conn.close()  # cut off mid-answer: never handed out again
            raise LegacyDbTimeout(f"no answer within {timeout:g}s") from None
        except (OSError, pymysql.MySQLError) as exc:
            # The class and MySQL's error number, not the text: that may quote the values.
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else ""
            raise LegacyDbUnavailable(f"legacy database: {type(exc).__name__} {code}") from None
        finally:
            if conn is not None:
                self._pool.release(conn)
        return rows
