"""The SQLite backend: one aiosqlite connection, WAL, every write a single statement.

aiosqlite runs the connection on one thread and executes calls in the order they were
made, so one connection serialises the store without an asyncio lock. Every write is a
single statement in autocommit mode, hence its own atomic transaction: nothing can be
half-written and no statement of one task can land inside another task's transaction.
Only migrations, run by ``open()`` before the store is shared, use explicit transactions.

sqlite3 errors become ``store.errors`` here and nowhere else.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from store import schema
from store.base import NewUser, User, new_user_id, utc_day
from store.errors import RejectedCapture, StoreUnavailable, UserExists, UserNotFound
from store.schema import Migration
from store.validation import normalise_identifier

BUSY_TIMEOUT = 5.0  # seconds a writer waits for another process's lock before failing

# "UNIQUE constraint failed: users.email" (several columns are listed for a composite key)
_UNIQUE_FAILED = re.compile(r"UNIQUE constraint failed: users\.(\w+)")
_UNIQUE_FIELDS = frozenset({"email", "username", "legacy_id"})

Row = sqlite3.Row


class SQLiteStore:
    """The Store on a SQLite file, for a single host (several processes may share it)."""

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] | None = None) -> None:
        self.path = str(path)
        # Injectable so tests can exercise future and failing migrations; packaged by default.
        self._migrations = migrations
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the file (creating its folder), configure it and apply pending migrations."""
        if self._conn is not None:
            return
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so that sqlite3 never opens a transaction
            # behind our back and each write statement commits on its own.
            conn = await aiosqlite.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        # Rows by column name: "SELECT *" stays right when a migration adds a column.
        conn.row_factory = sqlite3.Row
        self._conn = conn
        try:
            async with self._translate():
                # WAL: readers never wait for the writer, and other processes can read.
                await _run(conn, "PRAGMA journal_mode = WAL")
                # SECURITY: FULL, not NORMAL: a power cut must not undo a password change
                # or a session revocation that was already reported done.
                await _run(conn, "PRAGMA synchronous = FULL")
                await _run(conn, "PRAGMA foreign_keys = ON")
                await _run(conn, f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                migrations = self._migrations
                if migrations is None:
                    migrations = schema.load_migrations(schema.migrations_folder("sqlite"))
                await _migrate(conn, migrations)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; the store may be opened again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"closing SQLite store failed: {exc}") from exc

    async def find_user(self, identifier: str) -> User | None:
        """Return the user whose (lower-case) email or username equals ``identifier``."""
        ident = normalise_identifier(identifier)
        if not ident or not _encodable(ident):
            return None  # nobody is stored under an empty or unstorable (non-UTF-8) name
        # Email wins when one user's email is another's username: the answer stays stable.
        rows = await self._fetch(
            "SELECT * FROM users WHERE email = ?1 OR username = ?1"
            " ORDER BY email = ?1 DESC LIMIT 1",
            (ident,),
        )
        return _user(rows[0]) if rows else None

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with this authshim id."""
        rows = await self._fetch("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    async def insert_user(self, new: NewUser) -> User:
        """Store a new user; raise ``UserExists(field)`` when a unique field is taken."""
        profile = _profile_json(new.profile)
        rows = await self._fetch(
            "INSERT INTO users (id, legacy_id, email, username, password_hash, profile, source,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                new_user_id(),
                new.legacy_id,
                _norm(new.email),
                _norm(new.username),
                new.password_hash,
                profile,
                new.source,
                time.time(),
            ),
        )
        return _user(rows[0])

    async def record_login(self, user_id: str, *, new_hash: str | None = None) -> None:
        """Count a successful login; replace the hash when ``new_hash`` is given (rehash)."""
        await self._fetch(
            "UPDATE users SET login_count = login_count + 1, last_login_at = ?,"
            " password_hash = COALESCE(?, password_hash) WHERE id = ?",
            (time.time(), new_hash, user_id),
        )

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Replace the hash and revoke every session; return the new session epoch."""
        # One statement: a new password without the revocation can never be observed.
        return await self._bump_epoch(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1"
            " WHERE id = ? RETURNING session_epoch",
            (password_hash, user_id),
            user_id,
        )

    async def revoke_sessions(self, user_id: str) -> int:
        """Bump the session epoch so that every issued session is refused; return it."""
        return await self._bump_epoch(
            "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?"
            " RETURNING session_epoch",
            (user_id,),
            user_id,
        )

    async def set_blocked(self, user_id: str, blocked: bool) -> None:
        """Block or unblock a user."""
        await self._fetch("UPDATE users SET blocked = ? WHERE id = ?", (int(blocked), user_id))

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user; return whether one was removed."""
        rows = await self._fetch("DELETE FROM users WHERE id = ? RETURNING id", (user_id,))
        return bool(rows)

    async def get_setting(self, key: str) -> str | None:
        """Return a persisted setting (such as ``mode``)."""
        rows = await self._fetch("SELECT value FROM settings WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_setting(self, key: str, value: str) -> None:
        """Persist a setting so that every replica sees it."""
        await self._fetch(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def incr(self, name: str, n: int = 1, *, day: str | None = None) -> None:
        """Add ``n`` to the counter ``name`` of ``day`` (default today, UTC)."""
        # One row per (day, name), summed in place: the table grows per day, not per event.
        await self._fetch(
            "INSERT INTO counters (day, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (day, name) DO UPDATE SET value = value + excluded.value",
            (day or utc_day(), name, n),
        )

    async def counters(self, *, since: str | None = None) -> dict[tuple[str, str], int]:
        """Return ``{(day, name): value}`` for days on or after ``since``."""
        rows = await self._fetch(
            "SELECT day, name, value FROM counters WHERE day >= ? ORDER BY day, name",
            (since or "",),
        )
        return {(str(day), str(name)): int(value) for day, name, value in rows}

    async def count_users(self) -> int:
        """Return how many users are stored."""
        rows = await self._fetch("SELECT COUNT(*) FROM users", ())
        return int(rows[0][0])

    async def _bump_epoch(self, sql: str, params: Sequence[Any], user_id: str) -> int:
        rows = await self._fetch(sql, params)
        if not rows:
            # The protocol returns an epoch, and there is none to return: say so loudly.
            raise UserNotFound(f"no user with id {user_id!r}")
        return int(rows[0][0])

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one statement (its own transaction) and return every row it yields."""
        conn = self._connection()
        async with self._translate():
            return await _run(conn, sql, params)

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
                raise UserExists(match[1]) from exc
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


async def _run(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """Run one statement to completion, so that no open cursor holds a lock afterwards."""
    return list(await conn.execute_fetchall(sql, params))


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _norm(identifier: str | None) -> str | None:
    if identifier is None:
        return None
    # SECURITY: an empty identifier is stored as absent, so that find_user("") finds nobody.
    return normalise_identifier(identifier) or None


def _profile_json(profile: dict[str, Any]) -> str:
    """Encode a profile before the database is touched, so a bad one leaves nothing behind.

    Raises:
        RejectedCapture: ``bad_profile``, for what JSON cannot hold (lone surrogates,
            integers past 64 bits); a StoreError, so a capture fails without a crash.
    """
    try:
        # Non-text keys become text, as the standard json module (and PostgreSQL) do.
        return orjson.dumps(profile, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:  # orjson.JSONEncodeError
        raise RejectedCapture("bad_profile", str(exc)) from exc


def _user(row: Row) -> User:
    last_login = row["last_login_at"]
    return User(
        id=row["id"],
        legacy_id=row["legacy_id"],
        email=row["email"],
        username=row["username"],
        password_hash=row["password_hash"],
        profile=orjson.loads(row["profile"]),
        source=row["source"],
        created_at=float(row["created_at"]),
        last_login_at=None if last_login is None else float(last_login),
        login_count=int(row["login_count"]),
        blocked=bool(row["blocked"]),
        session_epoch=int(row["session_epoch"]),
    )
