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
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from store import limits, listing, schema
from store.base import (
    Identifiers,
    NewMail,
    NewResetToken,
    NewUser,
    OutboxMail,
    ResetToken,
    User,
    new_user_id,
    utc_day,
)
from store.errors import RejectedCapture, StoreUnavailable, UserExists, UserNotFound
from store.limits import LimitDecision, LimitRule, LimitState
from store.schema import Migration
from store.validation import normalise_identifier

# --- admin queries (operations issue) ---
# NOCASE columns hold lower-case values, so their order is byte order, as Python's is.
_COLUMNS = listing.Columns(email="email", username="username", row="rowid", no_index="+")
_NOTE_CHUNK = 500  # rows per multi-row insert: 1500 parameters, well under SQLite's bound

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

    # --- replicas (PostgreSQL issue) ---
    async def identifiers_after(self, after: tuple[float, str], limit: int) -> list[Identifiers]:
        """Return up to ``limit`` users' identifiers created after ``after`` = (created_at, id)."""
        rows = await self._fetch(
            "SELECT created_at, id, email, username FROM users WHERE (created_at, id) > (?, ?)"
            " ORDER BY created_at, id LIMIT ?",
            (after[0], after[1], limit),
        )
        return [Identifiers(float(r[0]), r[1], r[2], r[3]) for r in rows]

    async def users_after(self, after_id: str, limit: int) -> list[User]:
        """Return up to ``limit`` whole users whose id sorts after ``after_id``, in id order."""
        rows = await self._fetch(
            "SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [_user(r) for r in rows]

    async def upsert_users(self, users: Sequence[User]) -> None:
        """Store ``users`` exactly as given (ids, hashes, times, epochs), replacing same ids."""
        # One multi-row statement per chunk: atomic without a transaction that another task's
        # statement could land in (see the module docstring).
        for start in range(0, len(users), _UPSERT_CHUNK):
            chunk = users[start : start + _UPSERT_CHUNK]
            params = [value for user in chunk for value in _user_row(user)]
            await self._fetch(_rows_sql(_UPSERT_USERS, _USER_ROW, len(chunk)), params)

    async def all_settings(self) -> dict[str, str]:
        """Return every persisted setting."""
        rows = await self._fetch("SELECT key, value FROM settings", ())
        return {str(key): str(value) for key, value in rows}

    async def set_counters(self, values: Mapping[tuple[str, str], int]) -> None:
        """Set each ``(day, name)`` counter to its value (set, not add: a copy is repeatable)."""
        items = sorted(values.items())
        for start in range(0, len(items), _UPSERT_CHUNK):
            chunk = items[start : start + _UPSERT_CHUNK]
            params = [v for (day, name), n in chunk for v in (day, name, n)]
            await self._fetch(_rows_sql(_SET_COUNTERS, "(?, ?, ?)", len(chunk)), params)

    # --- end replicas ---

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

    # --- reset tokens, outbox, identity changes (reset/sign-up issue) ---
    async def insert_reset_token(self, token: NewResetToken) -> ResetToken:
        """Store a reset token (only its hash)."""
        rows = await self._fetch(
            "INSERT INTO reset_tokens (token_hash, user_id, email, legacy_id, profile, epoch,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                token.token_hash,
                token.user_id,
                normalise_identifier(token.email),
                token.legacy_id,
                None if token.profile is None else _profile_json(token.profile),
                token.epoch,
                time.time(),
                token.expires_at,
            ),
        )
        return _reset_token(rows[0])

    async def find_reset_token(self, token_hash: str) -> ResetToken | None:
        """Return the token with this hash, used or expired alike."""
        rows = await self._fetch("SELECT * FROM reset_tokens WHERE token_hash = ?", (token_hash,))
        return _reset_token(rows[0]) if rows else None

    async def use_reset_token(self, token_hash: str, *, now: float) -> ResetToken | None:
        """Use a live token once, and retire every other live token of its email or user."""
        # One statement, so two requests racing with one token cannot both get it.
        rows = await self._fetch(
            "UPDATE reset_tokens SET used_at = ?1 WHERE used_at IS NULL AND EXISTS ("
            "  SELECT 1 FROM reset_tokens WHERE token_hash = ?2 AND used_at IS NULL"
            "  AND expires_at > ?1)"
            " AND (token_hash = ?2"
            "  OR email = (SELECT email FROM reset_tokens WHERE token_hash = ?2)"
            "  OR user_id = (SELECT user_id FROM reset_tokens WHERE token_hash = ?2))"
            " RETURNING *",
            (now, token_hash),
        )
        return next((_reset_token(r) for r in rows if r["token_hash"] == token_hash), None)

    async def enqueue_mail(self, mail: NewMail, *, now: float) -> str:
        """Put a mail in the outbox, due at once; return its id."""
        mail_id = new_user_id()
        await self._fetch(
            "INSERT INTO outbox (id, kind, recipient, data, created_at, next_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (mail_id, mail.kind, mail.recipient, orjson.dumps(mail.data).decode(), now, now),
        )
        return mail_id

    async def claim_mail(self, *, now: float, lease: float, limit: int) -> list[OutboxMail]:
        """Lease up to ``limit`` due, unsent mails; one statement, so each goes to one caller."""
        rows = await self._fetch(
            "UPDATE outbox SET lease_until = ?1 WHERE id IN ("
            "  SELECT id FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= ?2"
            "  AND (lease_until IS NULL OR lease_until <= ?2)"
            "  ORDER BY next_attempt_at LIMIT ?3)"
            " RETURNING *",
            (now + lease, now, limit),
        )
        return sorted((_outbox_mail(r) for r in rows), key=lambda m: m.next_attempt_at)

    async def mark_mail_sent(self, mail_id: str, *, now: float) -> None:
        """Record that a claimed mail went out; its data is dropped."""
        await self._fetch(
            "UPDATE outbox SET sent_at = ?, lease_until = NULL, data = '{}', last_error = NULL"
            " WHERE id = ?",
            (now, mail_id),
        )

    async def mark_mail_failed(self, mail_id: str, *, error: str, retry_at: float) -> None:
        """Record a failed attempt; the mail is due again at ``retry_at``."""
        await self._fetch(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, lease_until = NULL,"
            " last_error = ? WHERE id = ? AND sent_at IS NULL",
            (retry_at, error[:500], mail_id),
        )

    async def count_pending_mail(self) -> int:
        """Return how many mails are not sent yet."""
        rows = await self._fetch("SELECT count(*) FROM outbox WHERE sent_at IS NULL", ())
        return int(rows[0][0])

    async def purge_reset_data(self, *, before: float) -> int:
        """Delete tokens that expired and mails that were sent before ``before``."""
        tokens = await self._fetch(
            "DELETE FROM reset_tokens WHERE expires_at < ? RETURNING 1", (before,)
        )
        mails = await self._fetch("DELETE FROM outbox WHERE sent_at < ? RETURNING 1", (before,))
        return len(tokens) + len(mails)

    async def update_identity(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        profile: dict[str, Any] | None = None,
    ) -> User:
        """Set a user's email and/or username (None leaves one as it is), and the profile."""
        rows = await self._fetch(
            "UPDATE users SET email = COALESCE(?, email), username = COALESCE(?, username),"
            " profile = COALESCE(?, profile) WHERE id = ? RETURNING *",
            (
                _norm(email),
                _norm(username),
                None if profile is None else _profile_json(profile),
                user_id,
            ),
        )
        if not rows:
            raise UserNotFound(f"no user with id {user_id!r}")
        return _user(rows[0])

    async def update_profile(self, user_id: str, profile: dict[str, Any]) -> User:
        """Replace a user's stored profile."""
        return await self.update_identity(user_id, email=None, username=None, profile=profile)

    # --- end reset tokens, outbox, identity changes ---

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

    # --- brute force and rate limits (hardening issue) ---
    async def limit_attempt(
        self, key: str, rule: LimitRule, *, now: float, subject: str | None = None
    ) -> LimitDecision:
        """Count one attempt on ``key`` under ``rule`` (compare-and-swap on ``version``)."""

        async def load() -> LimitState | None:
            rows = await self._fetch(
                "SELECT count, window_start, blocked_until, version FROM limits WHERE key = ?",
                (key,),
            )
            return LimitState(*rows[0]) if rows else None

        async def write(old: LimitState | None, new: LimitState) -> bool:
            fields = (new.count, new.window_start, new.blocked_until, new.version)
            if old is None:
                rows = await self._fetch(
                    "INSERT INTO limits (count, window_start, blocked_until, version, key,"
                    " subject) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
                    " RETURNING key",
                    (*fields, key, subject),
                )
            else:
                rows = await self._fetch(
                    "UPDATE limits SET count = ?, window_start = ?, blocked_until = ?,"
                    " version = ? WHERE key = ? AND version = ? RETURNING key",
                    (*fields, key, old.version),
                )
            return bool(rows)

        return await limits.apply(load, write, rule, now)

    async def limit_refund(self, key: str) -> None:
        """Take one attempt back off ``key`` (it turned out to succeed); a block stays."""
        await self._fetch(
            "UPDATE limits SET count = max(count - 1, 0), version = version + 1 WHERE key = ?",
            (key,),
        )

    async def limit_clear(self, keys: Sequence[str] = (), *, subject: str | None = None) -> int:
        """Delete the counters ``keys`` and every counter of ``subject``; return how many."""
        marks = ", ".join("?" * len(keys))
        rows = await self._fetch(
            f"DELETE FROM limits WHERE key IN ({marks}) OR subject = ? RETURNING key",  # noqa: S608
            (*keys, subject),
        )
        return len(rows)

    async def limit_purge(self, before: float) -> int:
        """Delete counters whose window began and whose block ended before ``before``."""
        rows = await self._fetch(
            "DELETE FROM limits WHERE window_start < ?1 AND blocked_until < ?1 RETURNING key",
            (before,),
        )
        return len(rows)

    # --- end brute force and rate limits ---

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

    # --- admin queries (operations issue) ---
    async def list_users(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[User]:
        """Return up to ``limit`` users in (created_at, id) order, after the cursor ``after``."""
        sql, params = listing.list_query(source=source, since=since, after=after, limit=limit)
        return [_user(r) for r in await self._fetch(sql, params)]

    async def search_users(
        self,
        prefix: str,
        *,
        source: str | None = None,
        since: float | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[tuple[str, User]]:
        """Return ``(key, user)`` whose email/username starts with ``prefix`` or legacy id is it."""
        norm = normalise_identifier(prefix)
        if not norm or not _encodable(prefix):
            return []
        branches = listing.search_queries(
            _COLUMNS, norm, prefix.strip(), source=source, since=since, after=after, limit=limit
        )
        found = [[_user(r) for r in await self._fetch(sql, p)] for sql, p in branches]
        return listing.merge_matches(listing.search_keys(norm, after, *found), norm, limit)

    async def count_by_source(self) -> dict[str, int]:
        """Return how many users each source (login, reset, signup, ...) brought in."""
        rows = await self._fetch("SELECT source, COUNT(*) FROM users GROUP BY source", ())
        return {str(source): int(n) for source, n in rows}

    async def migrated_per_day(self, *, since: float) -> dict[str, int]:
        """Return ``{UTC day: users created that day}`` for users created at or after ``since``."""
        rows = await self._fetch(
            "SELECT CAST(created_at / 86400 AS INTEGER) AS d, COUNT(*) FROM users"
            " WHERE created_at >= ? GROUP BY d ORDER BY d",
            (since,),
        )
        return {listing.day_of(int(d)): int(n) for d, n in rows}

    async def note_logins(self, day: str, entries: Sequence[tuple[str, bool]]) -> None:
        """Record that each ``(ident, migrated)`` logged in on ``day`` (later days win)."""
        items = list(listing.merge_logins(entries).items())
        for start in range(0, len(items), _NOTE_CHUNK):
            chunk = items[start : start + _NOTE_CHUNK]
            await self._fetch(
                # Only ? marks are formatted in; the values are parameters.
                "INSERT INTO login_activity (ident, last_day, migrated) VALUES "  # noqa: S608
                + ", ".join(["(?, ?, ?)"] * len(chunk))
                + listing.NOTE_LOGINS_UPDATE,
                [v for ident, migrated in chunk for v in (ident, day, int(migrated))],
            )

    async def login_readiness(self, *, since_day: str) -> tuple[int, int]:
        """Return ``(identifiers seen on or after since_day, how many of them were migrated)``."""
        rows = await self._fetch(
            "SELECT COUNT(*), COALESCE(SUM(migrated), 0) FROM login_activity WHERE last_day >= ?",
            (since_day,),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def prune_logins(self, *, before_day: str) -> int:
        """Forget identifiers last seen before ``before_day``; return how many were removed."""
        rows = await self._fetch(
            "DELETE FROM login_activity WHERE last_day < ? RETURNING 1", (before_day,)
        )
        return len(rows)

    # --- end admin queries ---

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


# --- replicas (PostgreSQL issue) ---
# 12 parameters a row: 500 rows stay well under SQLite's 32766 bound on parameters.
_UPSERT_CHUNK = 500
_USER_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPSERT_USERS = (
    "INSERT INTO users (id, legacy_id, email, username, password_hash, profile, source,"
    " created_at, last_login_at, login_count, blocked, session_epoch) VALUES {values}"
    " ON CONFLICT (id) DO UPDATE SET legacy_id = excluded.legacy_id, email = excluded.email,"
    " username = excluded.username, password_hash = excluded.password_hash,"
    " profile = excluded.profile, source = excluded.source, created_at = excluded.created_at,"
    " last_login_at = excluded.last_login_at, login_count = excluded.login_count,"
    " blocked = excluded.blocked, session_epoch = excluded.session_epoch"
)

_SET_COUNTERS = (
    "INSERT INTO counters (day, name, value) VALUES {values}"
    " ON CONFLICT (day, name) DO UPDATE SET value = excluded.value"
)


def _rows_sql(template: str, row: str, n: int) -> str:
    """``template`` with ``n`` placeholder rows: only ``?`` marks are formatted in, no values."""
    return template.format(values=", ".join([row] * n))


def _user_row(user: User) -> tuple[Any, ...]:
    return (
        user.id,
        user.legacy_id,
        _norm(user.email),
        _norm(user.username),
        user.password_hash,
        _profile_json(user.profile),
        user.source,
        user.created_at,
        user.last_login_at,
        user.login_count,
        int(user.blocked),
        user.session_epoch,
    )


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


# --- reset tokens, outbox (reset/sign-up issue) ---
def _reset_token(row: Row) -> ResetToken:
    used_at = row["used_at"]
    return ResetToken(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        email=row["email"],
        legacy_id=row["legacy_id"],
        profile=None if row["profile"] is None else orjson.loads(row["profile"]),
        epoch=int(row["epoch"]),
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        used_at=None if used_at is None else float(used_at),
    )


def _outbox_mail(row: Row) -> OutboxMail:
    sent_at = row["sent_at"]
    return OutboxMail(
        id=row["id"],
        kind=row["kind"],
        recipient=row["recipient"],
        data=orjson.loads(row["data"]),
        created_at=float(row["created_at"]),
        attempts=int(row["attempts"]),
        next_attempt_at=float(row["next_attempt_at"]),
        sent_at=None if sent_at is None else float(sent_at),
        last_error=row["last_error"],
    )
