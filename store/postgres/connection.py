"""The PostgreSQL pool: open (create the schema, migrate), close, and run one operation.

``_run`` is where a pooled operation's asyncpg errors become store errors (through
``translate``), where a lost connection is retried once on a fresh one, and where each call's
deadline is kept: getting a connection and every query of the call within ``CALL_TIMEOUT``.
A silent database (a partition, a frozen server: no reset, no answer) then fails each call
like an outage within that deadline. The connection a deadline cut off is dropped on the
spot: asyncpg would otherwise send a cancel request and wait for it before handing it back,
which a silent server never answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from store.errors import StoreUnavailable
from store.postgres.listener import Listener
from store.postgres.sockets import keep_alive
from store.postgres.translate import (
    DB_ERRORS,
    connection_lost,
    describe,
    unavailable,
    unique_violation,
)
from store.schema import SCHEMA_VERSION_DDL, Migration, load_migrations, migrations_folder, pending
from store.values import USERNAME_CASE_SETTING

log = logging.getLogger(__package__)  # "store.postgres", as for the whole backend
T = TypeVar("T")

CALL_TIMEOUT = 5.0  # one store call: a pooled connection (waiting, connecting) and its queries
STATEMENT_TIMEOUT = 4.0  # server-side: a slow but live server cancels first, keeping the link
CONNECT_TIMEOUT = 5.0  # an unreachable database must fail the request fast, not hang it
MIGRATE_TIMEOUT = 120.0  # another replica may hold the migration lock meanwhile

# SECURITY: quoted into DDL and search_path, so identifiers only (PostgreSQL's 63 bytes).
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PostgresConnection:
    """The pool (and settings listener) every part of ``PostgresStore`` runs on."""

    def __init__(
        self, dsn: str, *, schema: str = "public", pool_min: int = 2, pool_max: int = 10
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"PostgreSQL schema must be an identifier, got {schema!r}")
        self._dsn = dsn
        self._schema = schema
        self._pool_min = pool_min
        self._pool_max = pool_max
        # How usernames are folded into their key: the store's recorded rule, read at open;
        # ``use_username_case`` sets another while no user is stored (store/values.py).
        self.username_case = "lower"
        # application_name is left to the DSN (?application_name=replica-1) to tell replicas apart.
        self._server_settings = {
            "search_path": f'"{schema}"',
            "statement_timeout": str(int(STATEMENT_TIMEOUT * 1000)),
        }
        self.channel = _channel(schema)
        self._pool: Any = None
        self._closing = False
        self._listener = Listener(
            dsn,
            channel=self.channel,
            server_settings={"search_path": self._server_settings["search_path"]},
            timeout=CONNECT_TIMEOUT,
            closing=lambda: self._closing,
        )

    async def open(self) -> None:
        """Connect the pool, create the schema if missing and apply pending migrations."""
        if self._pool is not None:
            return
        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._pool_min,
                max_size=self._pool_max,
                timeout=CONNECT_TIMEOUT,
                command_timeout=CALL_TIMEOUT,  # the timeout= of each query that names none
                server_settings=self._server_settings,
                init=_init,
            )
        except DB_ERRORS as exc:
            raise unavailable(exc) from exc
        try:
            migrations = load_migrations(migrations_folder("postgresql"))
            await self._run(lambda conn: self._migrate(conn, migrations), deadline=MIGRATE_TIMEOUT)
            sql = "SELECT value FROM settings WHERE key = $1"
            case = await self._run(lambda c: c.fetchval(sql, USERNAME_CASE_SETTING))
            self.username_case = str(case or "lower")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self._closing = True
        await self._listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CALL_TIMEOUT)
            except TimeoutError:
                pool.terminate()  # a query that would not finish must not block shutdown

    async def _migrate(self, conn: Any, migrations: list[Migration]) -> None:
        """Apply the migrations ``schema_version`` does not list, all in one transaction."""
        async with conn.transaction():
            # A migration may take long: the deadline above bounds it, not statement_timeout.
            await conn.execute("SET LOCAL statement_timeout = 0")
            # Replicas starting together queue here; the lock is released at commit, when
            # the next one finds every version already recorded. CREATE ... IF NOT EXISTS
            # alone is not safe against a concurrent creator.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", _lock_key(self._schema), timeout=MIGRATE_TIMEOUT
            )
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
            await conn.execute(SCHEMA_VERSION_DDL)
            applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
            for migration in pending(migrations, applied):
                await conn.execute(migration.sql, timeout=MIGRATE_TIMEOUT)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    time.time(),
                )
                log.info("applied %s to PostgreSQL schema %s", migration.name, self._schema)

    async def _run(self, op: Callable[[Any], Awaitable[T]], *, deadline: float = CALL_TIMEOUT) -> T:
        """Run ``op`` on a pooled connection within ``deadline`` seconds, retrying once (within
        the same deadline) when the connection was lost.

        A write that committed just before its connection died runs twice: harmless for
        counters, login counts and session epochs; insert_user recognises its own row.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        for retry in (True, False):
            pool = self._pool
            if pool is None:
                raise StoreUnavailable("PostgreSQL store is not open")
            try:
                async with asyncio.timeout_at(end):
                    return await _on_connection(pool, op, max(end - loop.time(), 0.0))
            except asyncpg.UniqueViolationError as exc:
                raise unique_violation(exc) from exc
            except TimeoutError as exc:
                raise StoreUnavailable(f"PostgreSQL did not answer within {deadline:g} s") from exc
            except DB_ERRORS as exc:
                if not (retry and connection_lost(exc) and not self._closing):
                    raise unavailable(exc) from exc
                log.warning("%s; retrying on a fresh connection", describe(exc))
                # A lost connection usually means a restart or failover that took its idle
                # siblings too: make the retry (and later calls) reconnect, not reuse them.
                await pool.expire_connections()
        raise AssertionError("unreachable")


async def _on_connection(pool: Any, op: Callable[[Any], Awaitable[T]], wait: float) -> T:
    """Acquire a connection within ``wait`` seconds, run ``op`` on it and hand it back; drop it
    instead when a deadline or a cancellation cut ``op`` off mid-query."""
    conn = await pool.acquire(timeout=wait)
    try:
        return await op(conn)
    except (TimeoutError, asyncio.CancelledError):
        # Its peer may be silent: releasing would wait for asyncpg's cancel request, which
        # a silent server never answers (10 s more per call before this).
        conn.terminate()
        raise
    finally:
        await pool.release(conn)


async def _init(conn: Any) -> None:
    """Each new pooled connection: keepalives, so that an idle one notices a silent peer."""
    keep_alive(conn)


def _channel(schema: str) -> str:
    """The NOTIFY channel of ``schema``: replicas (or tests) of other schemas never hear it."""
    name = f"{schema}.authshim_settings"
    if len(name) <= 63:  # longer channel names are truncated by LISTEN, refused by pg_notify
        return name
    return f"authshim_settings.{hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()}"


def _lock_key(schema: str) -> int:
    """The advisory lock id for migrating ``schema``: stable across processes and versions."""
    digest = hashlib.blake2b(f"authshim-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
