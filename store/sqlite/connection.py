"""The SQLite connections: open (configure, migrate), close, and one statement at a time.

Two connections, each on its own thread: the writer, which every write goes through in the
order it was made, and a reader (``query_only``) for plain ``SELECT`` statements. WAL lets the
reader read while the writer waits for a lock another process holds (a backup, a migration),
so a login's look-up never queues behind a write. Each write has a deadline of one busy
timeout from when it was asked for, not from when its turn came: a write queued behind others
that waited out a lock fails at its own deadline instead of adding theirs to its own.

sqlite3 errors become ``store.errors`` here and nowhere else (``_translate``).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from store import schema
from store.errors import StoreUnavailable, UserExists
from store.schema import Migration
from store.values import USERNAME_CASE_SETTING

BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's lock before failing
MIGRATION_BUSY_TIMEOUT = 60.0  # at start, behind other processes' migrations
_QUEUED = 0.02  # seconds a write may wait for its turn and still get the full busy timeout
TUNABLE_PRAGMAS = frozenset({"max_page_count", "query_only", "busy_timeout"})

# "UNIQUE constraint failed: users.email" (several columns are listed for a composite key)
_UNIQUE_FAILED = re.compile(r"UNIQUE constraint failed: users\.(\w+)")
_UNIQUE_FIELDS = {"email": "email", "username_key": "username", "legacy_id": "legacy_id"}

Row = sqlite3.Row
T = TypeVar("T")


class SQLiteConnection:
    """The one connection every part of ``SQLiteStore`` runs its statements on."""

    def __init__(
        self,
        path: str | Path,
        *,
        migrations: Sequence[Migration] | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self.path = str(path)
        # Injectable so tests can exercise future and failing migrations; packaged by default.
        self._migrations = migrations
        # Seconds a write waits for another process's lock; lowered by the fault tests.
        self._busy_timeout = busy_timeout
        # How usernames are folded into their key: the store's recorded rule, read at open;
        # ``use_username_case`` sets another while no user is stored (store/values.py).
        self.username_case = "lower"
        self._conn: aiosqlite.Connection | None = None
        # None for an in-memory store, which a second connection would not see: reads then
        # share the writer.
        self._reader: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the file (creating its folder), configure it and apply pending migrations."""
        if self._conn is not None:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so that sqlite3 never opens a transaction
            # behind our back and each write statement commits on its own.
            conn = await aiosqlite.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        # Rows by column name: "SELECT *" stays right when a migration adds a column.
        conn.row_factory = sqlite3.Row
        self._conn = conn
        try:
            await self._prepare(conn)
            async with self._translate():
                found = await _run(
                    conn, "SELECT value FROM settings WHERE key = ?", (USERNAME_CASE_SETTING,)
                )
            self.username_case = str(found[0][0]) if found else "lower"
            if not _in_memory(self.path):
                self._reader = await self._open_reader()
        except BaseException:
            await self.close()
            raise

    async def _open_reader(self) -> aiosqlite.Connection:
        """The read connection: query_only, so that a write sent to it fails loudly."""
        async with self._translate():
            reader = await aiosqlite.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None
            )
            reader.row_factory = sqlite3.Row
            try:
                await _run(reader, "PRAGMA query_only = 1")
            except BaseException:
                await reader.close()
                raise
            return reader

    async def _prepare(self, conn: aiosqlite.Connection) -> None:
        """Set the connection up and migrate, retrying while other processes hold the file.

        SQLite answers "database is locked" at once, without waiting, in a few start-up cases
        (switching to WAL, WAL recovery) when several processes open one new file together.
        """
        deadline = time.monotonic() + MIGRATION_BUSY_TIMEOUT
        for attempt in itertools.count():
            try:
                async with self._translate():
                    # WAL: readers never wait for the writer, and other processes can read.
                    await _run(conn, "PRAGMA journal_mode = WAL")
                    # SECURITY: FULL, not NORMAL: a power cut must not undo a password change
                    # or a session revocation that was already reported done.
                    await _run(conn, "PRAGMA synchronous = FULL")
                    await _run(conn, "PRAGMA foreign_keys = ON")
                    migrations = self._migrations
                    if migrations is None:
                        migrations = schema.load_migrations(schema.migrations_folder("sqlite"))
                    await _migrate(conn, migrations)
                    await _run(conn, f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                return
            except StoreUnavailable as exc:
                if "database is locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(min(0.02 * 2**attempt, 0.5))

    async def close(self) -> None:
        """Close the connections; the store may be opened again."""
        reader, self._reader = self._reader, None
        conn, self._conn = self._conn, None
        for each in (reader, conn):
            if each is not None:
                try:
                    await each.close()
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"closing SQLite store failed: {exc}") from exc

    async def _fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Row]:
        """Run one statement (its own transaction) and return every row it yields: a plain
        SELECT on the reader, anything else on the writer within its deadline."""
        reader = self._reader
        if reader is not None and _is_read(sql):
            async with self._translate():
                return await _run(reader, sql, params)
        return await self._in_thread(lambda conn: list(conn.execute(sql, params).fetchall()))

    async def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer's own thread: several statements (a transaction of its
        own making) for the price of one hop between threads, not one per statement. It fails
        as a locked store once one busy timeout has passed since this call."""
        conn = self._connection()
        timed = _within(time.monotonic() + self._busy_timeout, self._busy_timeout, fn)
        async with self._translate():
            # aiosqlite's own way of running a call on its thread (private; aiosqlite is pinned
            # below 0.23 in pyproject.toml, and the store contract tests exercise it).
            runner = cast(Any, conn)
            return cast(T, await runner._execute(timed, runner._conn))

    async def set_pragma(self, name: str, value: int) -> None:
        """Set one of ``TUNABLE_PRAGMAS`` on the store's connection: a size quota in pages
        (``max_page_count``), a read-only store (``query_only``), or how long a write waits
        for a lock (``busy_timeout``, milliseconds). For operations and the fault tests."""
        if name not in TUNABLE_PRAGMAS:
            raise ValueError(f"not a tunable pragma: {name!r}")
        if name == "busy_timeout":
            self._busy_timeout = int(value) / 1000  # the deadline of this and later writes
        await self._fetch(f"PRAGMA {name} = {int(value)}", ())

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable("the SQLite store is not open")
        return self._conn

    @asynccontextmanager
    async def _translate(self) -> AsyncIterator[None]:
        """Turn sqlite3 errors into store errors: the one place this happens."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            match = _UNIQUE_FAILED.search(str(exc))
            if match and match[1] in _UNIQUE_FIELDS:
                raise UserExists(_UNIQUE_FIELDS[match[1]]) from exc
            raise StoreUnavailable(f"SQLite refused a write: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite failed: {exc}") from exc
        except UnicodeEncodeError as exc:  # a lone surrogate, which JSON bodies can carry
            raise StoreUnavailable(f"SQLite cannot store text that is not UTF-8: {exc}") from exc
        except ValueError as exc:  # aiosqlite's "Connection closed" after a concurrent close
            if "closed" not in str(exc) and "no active connection" not in str(exc):
                raise
            raise StoreUnavailable("the SQLite store is closed") from exc


async def _migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> None:
    """Apply pending migrations in one transaction, safe against a second process."""
    # Replicas starting together queue behind each other's migrations: wait longer than a
    # request would, so that a slow disk at start does not fail the open.
    await _run(conn, f"PRAGMA busy_timeout = {int(MIGRATION_BUSY_TIMEOUT * 1000)}")
    await _run(conn, schema.SCHEMA_VERSION_DDL)
    # IMMEDIATE takes the write lock before reading the versions, so that two processes
    # starting together apply each migration once: the second waits, then finds none.
    await _run(conn, "BEGIN IMMEDIATE")
    try:
        rows = await _run(conn, "SELECT version FROM schema_version")
        for migration in schema.pending(migrations, {int(r[0]) for r in rows}):
            for statement in schema.split_statements(migration.sql):
                await _run(conn, statement)
            await _run(
                conn,
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
        await _run(conn, "COMMIT")
    except BaseException:
        # SQLite DDL is transactional: a failed migration leaves the schema as it was.
        if conn.in_transaction:
            await _run(conn, "ROLLBACK")
        raise


def transaction(conn: sqlite3.Connection, work: Callable[[], T], *, durable: bool = True) -> T:
    """Run ``work`` (statements on ``conn``, on its thread) inside ``BEGIN IMMEDIATE`` and
    ``COMMIT``; rolled back when it raises.

    ``durable=False`` commits without waiting for the disk (``synchronous = NORMAL``): the
    transaction survives a crash of authshim but a power cut may undo it, never half of it,
    and a later durable commit makes it durable too (the WAL is written in order). For
    bookkeeping only: login counts and brute-force counters, where a power cut undoing the
    last moment's changes costs a login count or a few attempts' worth of limit.
    """
    if not durable:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        if not durable:
            conn.execute("PRAGMA synchronous = FULL")  # SECURITY: as _prepare set it


def _within(
    deadline: float, busy_timeout: float, fn: Callable[[sqlite3.Connection], T]
) -> Callable[[sqlite3.Connection], T]:
    """``fn``, made to fail like a locked store when it starts past ``deadline`` and to wait
    for a lock only until then (the busy timeout shortened to what is left)."""

    def timed(conn: sqlite3.Connection) -> T:
        left = deadline - time.monotonic()
        if left <= 0:
            raise sqlite3.OperationalError(
                "database is locked (the busy timeout passed while this write waited its turn)"
            )
        if left > busy_timeout - _QUEUED:
            return fn(conn)  # its turn came at once: the connection's busy timeout applies
        conn.execute(f"PRAGMA busy_timeout = {max(1, int(left * 1000))}")
        try:
            return fn(conn)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")

    return timed


def _is_read(sql: str) -> bool:
    """Whether ``sql`` is a plain SELECT, which the reader may run (it refuses writes)."""
    return sql.lstrip()[:6].upper() == "SELECT"


def _in_memory(path: str) -> bool:
    return path in ("", ":memory:") or "mode=memory" in path


async def _run(
    conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[Row]:
    """Run one statement to completion, so that no open cursor holds a lock afterwards."""
    return list(await conn.execute_fetchall(sql, params))
