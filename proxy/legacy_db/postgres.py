"""The PostgreSQL driver (asyncpg): every connection read-only by its session default."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from proxy.config.legacy_db import LegacyDbConfig
from proxy.legacy_db.base import compile_template
from proxy.legacy_db.errors import LegacyDbTimeout, LegacyDbUnavailable


class PostgresDb:
    """A bounded asyncpg pool on the legacy database."""

    def __init__(self, config: LegacyDbConfig) -> None:
        self._config = config
        self._pool: asyncpg.Pool | None = None
        self._sql: dict[str, tuple[str, tuple[str, ...]]] = {}

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._config.url.value, min_size=1, max_size=self._config.pool_size,
                timeout=self._config.timeout, command_timeout=self._config.timeout,
                # SECURITY: a template that writes fails in the database too.
                server_settings={"default_transaction_read_only": "on"},
            )  # fmt: skip
        except TimeoutError:
            raise LegacyDbTimeout("no connection to the legacy database in time") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LegacyDbUnavailable(f"legacy database: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def fetch(self, sql: str, values: Mapping[str, object]) -> list[dict[str, Any]]:
        if self._pool is None:
            raise LegacyDbUnavailable("the legacy database is not open")
        query, names = self._sql.get(sql) or self._sql.setdefault(
            sql, compile_template(sql, "dollar")
        )
        timeout = self._config.timeout
        try:
            async with self._pool.acquire(timeout=timeout) as conn:
                rows = await conn.fetch(query, *(values[n] for n in names), timeout=timeout)
        except TimeoutError:
            raise LegacyDbTimeout(f"no answer within {timeout:g}s") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The error's class, not its text: that may quote the values bound.
            raise LegacyDbUnavailable(f"legacy database: {type(exc).__name__}") from None
        return [dict(row) for row in rows]
