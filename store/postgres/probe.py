"""Whether a PostgreSQL schema holds an authshim store, asked without creating anything."""

from __future__ import annotations

import asyncpg

from store.postgres.connection import CONNECT_TIMEOUT
from store.postgres.translate import DB_ERRORS, unavailable


async def schema_exists(dsn: str, schema: str) -> bool:
    """Whether ``schema`` has authshim's ``schema_version`` table (the store was opened once).

    Raises:
        StoreUnavailable: the database cannot be reached.
    """
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except DB_ERRORS as exc:
        raise unavailable(exc) from exc
    try:
        found = await conn.fetchval(
            "SELECT to_regclass(format('%I.schema_version', $1::text)) IS NOT NULL", schema
        )
    except DB_ERRORS as exc:
        raise unavailable(exc) from exc
    finally:
        await conn.close()
    return bool(found)
