"""PostgreSQL backend (asyncpg): one schema shared by every authshim replica.

asyncpg errors become ``store.errors`` here and only here: a unique violation is
``UserExists(field)``, everything else the database or the network does is ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import orjson

from store import limits, listing
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
from store.errors import StoreUnavailable, UserExists, UserNotFound
from store.limits import LimitDecision, LimitRule, LimitState
from store.schema import SCHEMA_VERSION_DDL, Migration, load_migrations, migrations_folder, pending
from store.validation import normalise_identifier

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT = 5.0  # an unreachable database must fail the request fast, not hang it
COMMAND_TIMEOUT = 10.0  # bounds a query on a connection whose peer vanished silently
ACQUIRE_TIMEOUT = 10.0  # an exhausted pool sheds load instead of queueing without end
MIGRATE_TIMEOUT = 120.0  # another replica may hold the migration lock meanwhile
RELISTEN_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)  # then every 5 s until the database is back

# SECURITY: quoted into DDL and search_path, so identifiers only (PostgreSQL's 63 bytes).
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Everything the database or the network raises; OSError includes TimeoutError.
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
# The connection failed, not the statement: one retry on a fresh connection may succeed.
_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,  # includes "connection was closed in the middle of..."
    asyncpg.exceptions.AdminShutdownError,  # pg_terminate_backend, fast shutdown
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # server starting up or in recovery
    # A backend terminated while idle can leave the protocol confused instead of closed
    # ("cannot switch to state ..."; MagicStack/asyncpg#1069): that connection is lost too.
    asyncpg.InternalClientError,
)
# The migration names each unique constraint or index users_<field>_key.
_UNIQUE_FIELDS = frozenset({"email", "username", "legacy_id"})
_USER_BY_ID = "SELECT * FROM users WHERE id = $1"
# --- admin queries (operations issue) ---
# The "C" collation: byte order, so that a prefix is one range of users_*_prefix (0003).
_COLUMNS = listing.Columns(
    email='(lower(email) COLLATE "C")', username='(lower(username) COLLATE "C")', row="id"
)


class PostgresStore:
    """A Store on PostgreSQL, safe to share between several replicas."""

    def __init__(
        self, dsn: str, *, schema: str = "public", pool_min: int = 2, pool_max: int = 10
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"PostgreSQL schema must be an identifier, got {schema!r}")
        self._dsn = dsn
        self._schema = schema
        self._pool_min = pool_min
        self._pool_max = pool_max
        # application_name is left to the DSN (?application_name=replica-1) to tell replicas apart.
        self._server_settings = {"search_path": f'"{schema}"'}
        self.channel = _channel(schema)
        self._pool: Any = None
        self._closing = False
        self._callbacks: list[Callable[[str, str], None]] = []
        self._listener: Any = None
        self._listen_lock = asyncio.Lock()  # two first callers must not open two listeners
        self._relisten: asyncio.Task[None] | None = None

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
                command_timeout=COMMAND_TIMEOUT,
                server_settings=self._server_settings,
            )
        except _DB_ERRORS as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        try:
            migrations = load_migrations(migrations_folder("postgresql"))
            await self._run(lambda conn: self._migrate(conn, migrations))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            await asyncio.gather(self._relisten, return_exceptions=True)
            self._relisten = None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.remove_termination_listener(self._on_listener_lost)
            await listener.close(timeout=CONNECT_TIMEOUT)
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), COMMAND_TIMEOUT)
            except TimeoutError:
                pool.terminate()  # a query that would not finish must not block shutdown

    async def _migrate(self, conn: Any, migrations: list[Migration]) -> None:
        """Apply the migrations ``schema_version`` does not list, all in one transaction."""
        async with conn.transaction():
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

    async def _run(self, op: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``op`` on a pooled connection, retrying once when the connection was lost.

        A write that committed just before its connection died runs twice: harmless for
        counters, login counts and session epochs; insert_user recognises its own row.
        """
        for retry in (True, False):
            pool = self._pool
            if pool is None:
                raise StoreUnavailable("PostgreSQL store is not open")
            try:
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                    return await op(conn)
            except asyncpg.UniqueViolationError as exc:
                field = (exc.constraint_name or "").removeprefix("users_").removesuffix("_key")
                if field not in _UNIQUE_FIELDS:
                    raise StoreUnavailable(_describe(exc)) from exc
                raise UserExists(field) from exc
            except _DB_ERRORS as exc:
                lost = isinstance(exc, _LOST) and not isinstance(exc, TimeoutError)
                if not (retry and lost and not self._closing):
                    raise StoreUnavailable(_describe(exc)) from exc
                log.warning("%s; retrying on a fresh connection", _describe(exc))
                # A lost connection usually means a restart or failover that took its idle
                # siblings too: make the retry (and later calls) reconnect, not reuse them.
                await pool.expire_connections()
        raise AssertionError("unreachable")

    async def find_user(self, identifier: str) -> User | None:
        """Return the user whose (lower-case) email or username equals ``identifier``."""
        # lower(column) is what the unique indexes hold, so both are used (a BitmapOr). Email
        # wins when one user's email is another's username: the answer stays stable.
        sql = (
            "SELECT * FROM users WHERE lower(email) = $1 OR lower(username) = $1"
            " ORDER BY lower(email) = $1 DESC NULLS LAST LIMIT 1"
        )
        ident = normalise_identifier(identifier)
        row = await self._run(lambda c: c.fetchrow(sql, ident))
        return _user(row) if row is not None else None

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with this authshim id."""
        row = await self._run(lambda c: c.fetchrow(_USER_BY_ID, user_id))
        return _user(row) if row is not None else None

    # --- replicas (PostgreSQL issue) ---
    async def identifiers_after(self, after: tuple[float, str], limit: int) -> list[Identifiers]:
        """Return up to ``limit`` users' identifiers created after ``after`` = (created_at, id)."""
        sql = (
            "SELECT created_at, id, email, username FROM users WHERE (created_at, id) > ($1, $2)"
            " ORDER BY created_at, id LIMIT $3"
        )
        rows = await self._run(lambda c: c.fetch(sql, after[0], after[1], limit))
        return [Identifiers(r[0], r[1], r[2], r[3]) for r in rows]

    async def users_after(self, after_id: str, limit: int) -> list[User]:
        """Return up to ``limit`` whole users whose id sorts after ``after_id``, in id order."""
        sql = "SELECT * FROM users WHERE id > $1 ORDER BY id LIMIT $2"
        return [_user(r) for r in await self._run(lambda c: c.fetch(sql, after_id, limit))]

    async def upsert_users(self, users: Sequence[User]) -> None:
        """Store ``users`` exactly as given (ids, hashes, times, epochs), replacing same ids."""
        # One statement over arrays: atomic, one round trip, and safe to retry whole.
        columns = list(zip(*(_user_row(u) for u in users), strict=True)) if users else []
        if columns:
            await self._run(lambda c: c.execute(_UPSERT_USERS, *columns))

    async def all_settings(self) -> dict[str, str]:
        """Return every persisted setting."""
        rows = await self._run(lambda c: c.fetch("SELECT key, value FROM settings"))
        return {r["key"]: r["value"] for r in rows}

    async def set_counters(self, values: Mapping[tuple[str, str], int]) -> None:
        """Set each ``(day, name)`` counter to its value (set, not add: a copy is repeatable)."""
        if not values:
            return
        days, names, counts = zip(*((d, n, v) for (d, n), v in values.items()), strict=True)
        sql = (
            "INSERT INTO counters (day, name, value)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])"
            " ON CONFLICT (day, name) DO UPDATE SET value = EXCLUDED.value"
        )
        await self._run(lambda c: c.execute(sql, list(days), list(names), list(counts)))

    # --- end replicas ---

    async def insert_user(self, new: NewUser) -> User:
        """Store a new user; raise ``UserExists(field)`` when a unique field is taken."""
        user_id = new_user_id()  # chosen once, so a retried insert can recognise its own row
        args = (
            user_id,
            new.legacy_id,
            _norm(new.email),
            _norm(new.username),
            new.password_hash,
            # Serialised before touching the database: a bad profile fails with nothing written.
            orjson.dumps(new.profile).decode(),
            new.source,
            time.time(),
        )

        async def op(conn: Any) -> Any:
            row = await conn.fetchrow(
                "INSERT INTO users (id, legacy_id, email, username, password_hash, profile,"
                " source, created_at) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)"
                " ON CONFLICT (id) DO NOTHING RETURNING *",
                *args,
            )
            if row is None:
                # Only on a retry: the first attempt committed but its connection died before
                # the answer arrived. The id is ours, so this is our user, not a duplicate.
                row = await conn.fetchrow(_USER_BY_ID, user_id)
            return row

        return _user(await self._run(op))

    # --- reset tokens, outbox, identity changes (reset/sign-up issue) ---
    async def insert_reset_token(self, token: NewResetToken) -> ResetToken:
        """Store a reset token (only its hash)."""
        args = (
            token.token_hash,
            token.user_id,
            normalise_identifier(token.email),
            token.legacy_id,
            None if token.profile is None else orjson.dumps(token.profile).decode(),
            token.epoch,
            time.time(),
            token.expires_at,
        )

        async def op(conn: Any) -> Any:
            # ON CONFLICT: a retry after a lost connection finds the row its first try wrote.
            await conn.execute(
                "INSERT INTO reset_tokens (token_hash, user_id, email, legacy_id, profile, epoch,"
                " created_at, expires_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)"
                " ON CONFLICT (token_hash) DO NOTHING",
                *args,
            )
            return await conn.fetchrow(_TOKEN_BY_HASH, token.token_hash)

        return _reset_token(await self._run(op))

    async def find_reset_token(self, token_hash: str) -> ResetToken | None:
        """Return the token with this hash, used or expired alike."""
        row = await self._run(lambda c: c.fetchrow(_TOKEN_BY_HASH, token_hash))
        return _reset_token(row) if row is not None else None

    async def use_reset_token(self, token_hash: str, *, now: float) -> ResetToken | None:
        """Use a live token once, and retire every other live token of its email or user."""
        # A racing second UPDATE waits for the first one's row locks, then re-checks
        # ``used_at IS NULL`` on the committed row and skips it: one winner.
        sql = (
            "UPDATE reset_tokens SET used_at = $1 WHERE used_at IS NULL AND EXISTS ("
            "  SELECT 1 FROM reset_tokens WHERE token_hash = $2 AND used_at IS NULL"
            "  AND expires_at > $1)"
            " AND (token_hash = $2"
            "  OR email = (SELECT email FROM reset_tokens WHERE token_hash = $2)"
            "  OR user_id = (SELECT user_id FROM reset_tokens WHERE token_hash = $2))"
            " RETURNING *"
        )
        rows = await self._run(lambda c: c.fetch(sql, now, token_hash))
        return next((_reset_token(r) for r in rows if r["token_hash"] == token_hash), None)

    async def enqueue_mail(self, mail: NewMail, *, now: float) -> str:
        """Put a mail in the outbox, due at once; return its id."""
        mail_id = new_user_id()  # chosen once, so a retried insert cannot queue it twice
        sql = (
            "INSERT INTO outbox (id, kind, recipient, data, created_at, next_attempt_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $5) ON CONFLICT (id) DO NOTHING"
        )
        data = orjson.dumps(mail.data).decode()
        await self._run(lambda c: c.execute(sql, mail_id, mail.kind, mail.recipient, data, now))
        return mail_id

    async def claim_mail(self, *, now: float, lease: float, limit: int) -> list[OutboxMail]:
        """Lease up to ``limit`` due, unsent mails; SKIP LOCKED keeps replicas off each other's."""
        sql = (
            "UPDATE outbox SET lease_until = $1 WHERE id IN ("
            "  SELECT id FROM outbox WHERE sent_at IS NULL AND next_attempt_at <= $2"
            "  AND (lease_until IS NULL OR lease_until <= $2)"
            "  ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
            " RETURNING *"
        )
        rows = await self._run(lambda c: c.fetch(sql, now + lease, now, limit))
        return sorted((_outbox_mail(r) for r in rows), key=lambda m: m.next_attempt_at)

    async def mark_mail_sent(self, mail_id: str, *, now: float) -> None:
        """Record that a claimed mail went out; its data is dropped."""
        sql = (
            "UPDATE outbox SET sent_at = $2, lease_until = NULL, data = '{}'::jsonb,"
            " last_error = NULL WHERE id = $1"
        )
        await self._run(lambda c: c.execute(sql, mail_id, now))

    async def mark_mail_failed(self, mail_id: str, *, error: str, retry_at: float) -> None:
        """Record a failed attempt; the mail is due again at ``retry_at``."""
        sql = (
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, lease_until = NULL,"
            " last_error = $3 WHERE id = $1 AND sent_at IS NULL"
        )
        await self._run(lambda c: c.execute(sql, mail_id, retry_at, error[:500]))

    async def count_pending_mail(self) -> int:
        """Return how many mails are not sent yet."""
        sql = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
        return int(await self._run(lambda c: c.fetchval(sql)))

    async def purge_reset_data(self, *, before: float) -> int:
        """Delete tokens that expired and mails that were sent before ``before``."""

        async def op(conn: Any) -> int:
            tokens = await conn.execute("DELETE FROM reset_tokens WHERE expires_at < $1", before)
            mails = await conn.execute("DELETE FROM outbox WHERE sent_at < $1", before)
            return int(tokens.split()[-1]) + int(mails.split()[-1])  # status "DELETE n"

        return await self._run(op)

    async def update_identity(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        profile: dict[str, Any] | None = None,
    ) -> User:
        """Set a user's email and/or username (None leaves one as it is), and the profile."""
        sql = (
            "UPDATE users SET email = COALESCE($2, email), username = COALESCE($3, username),"
            " profile = COALESCE($4::jsonb, profile) WHERE id = $1 RETURNING *"
        )
        encoded = None if profile is None else orjson.dumps(profile).decode()
        new_email, new_username = _norm(email) or None, _norm(username) or None
        row = await self._run(lambda c: c.fetchrow(sql, user_id, new_email, new_username, encoded))
        if row is None:
            raise UserNotFound(f"no user with id {user_id!r}")
        return _user(row)

    async def update_profile(self, user_id: str, profile: dict[str, Any]) -> User:
        """Replace a user's stored profile."""
        return await self.update_identity(user_id, email=None, username=None, profile=profile)

    # --- end reset tokens, outbox, identity changes ---

    async def record_login(self, user_id: str, *, new_hash: str | None = None) -> None:
        """Count a successful login; replace the hash when ``new_hash`` is given (rehash)."""
        sql = (
            "UPDATE users SET login_count = login_count + 1, last_login_at = $2,"
            " password_hash = COALESCE($3, password_hash) WHERE id = $1"
        )
        await self._run(lambda c: c.execute(sql, user_id, time.time(), new_hash))

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Replace the hash and revoke every session; return the new session epoch."""
        sql = (
            "UPDATE users SET password_hash = $2, session_epoch = session_epoch + 1"
            " WHERE id = $1 RETURNING session_epoch"
        )
        return await self._epoch(sql, user_id, password_hash)

    async def revoke_sessions(self, user_id: str) -> int:
        """Bump the session epoch so that every issued session is refused; return it."""
        sql = (
            "UPDATE users SET session_epoch = session_epoch + 1"
            " WHERE id = $1 RETURNING session_epoch"
        )
        return await self._epoch(sql, user_id)

    async def _epoch(self, sql: str, *args: Any) -> int:
        epoch = await self._run(lambda c: c.fetchval(sql, *args))
        if epoch is None:
            # The protocol returns an epoch, and there is none to return: say so loudly.
            raise UserNotFound(f"no user with id {args[0]!r}")
        return int(epoch)

    async def set_blocked(self, user_id: str, blocked: bool) -> None:
        """Block or unblock a user."""
        sql = "UPDATE users SET blocked = $2 WHERE id = $1"
        await self._run(lambda c: c.execute(sql, user_id, blocked))

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user; return whether one was removed."""
        sql = "DELETE FROM users WHERE id = $1 RETURNING id"
        return await self._run(lambda c: c.fetchval(sql, user_id)) is not None

    async def count_users(self) -> int:
        """Return how many users are stored."""
        return int(await self._run(lambda c: c.fetchval("SELECT count(*) FROM users")))

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
        rows = await self._run(lambda c: c.fetch(listing.numbered(sql), *params))
        return [_user(r) for r in rows]

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
        if not norm or "\x00" in prefix:  # PostgreSQL text cannot hold NUL: nobody matches
            return []
        branches = listing.search_queries(
            _COLUMNS, norm, prefix.strip(), source=source, since=since, after=after, limit=limit
        )

        async def op(conn: Any) -> list[list[User]]:
            return [
                [_user(r) for r in await conn.fetch(listing.numbered(sql), *params)]
                for sql, params in branches
            ]

        found = await self._run(op)
        return listing.merge_matches(listing.search_keys(norm, after, *found), norm, limit)

    async def count_by_source(self) -> dict[str, int]:
        """Return how many users each source (login, reset, signup, ...) brought in."""
        sql = "SELECT source, count(*) AS n FROM users GROUP BY source"
        return {r["source"]: int(r["n"]) for r in await self._run(lambda c: c.fetch(sql))}

    async def migrated_per_day(self, *, since: float) -> dict[str, int]:
        """Return ``{UTC day: users created that day}`` for users created at or after ``since``."""
        sql = (
            "SELECT floor(created_at / 86400)::bigint AS d, count(*) AS n FROM users"
            " WHERE created_at >= $1 GROUP BY d ORDER BY d"
        )
        rows = await self._run(lambda c: c.fetch(sql, since))
        return {listing.day_of(int(r["d"])): int(r["n"]) for r in rows}

    async def note_logins(self, day: str, entries: Sequence[tuple[str, bool]]) -> None:
        """Record that each ``(ident, migrated)`` logged in on ``day`` (later days win)."""
        merged = listing.merge_logins(entries)
        if not merged:
            return
        sql = (  # a constant: the values are parameters
            "INSERT INTO login_activity (ident, last_day, migrated)"  # noqa: S608
            " SELECT i, $2, m FROM unnest($1::text[], $3::boolean[]) AS t(i, m)"
            + listing.NOTE_LOGINS_UPDATE
        )
        idents, flags = list(merged), list(merged.values())
        await self._run(lambda c: c.execute(sql, idents, day, flags))

    async def login_readiness(self, *, since_day: str) -> tuple[int, int]:
        """Return ``(identifiers seen on or after since_day, how many of them were migrated)``."""
        sql = (
            "SELECT count(*) AS n, count(*) FILTER (WHERE migrated) AS m"
            " FROM login_activity WHERE last_day >= $1"
        )
        row = await self._run(lambda c: c.fetchrow(sql, since_day))
        return int(row["n"]), int(row["m"])

    async def prune_logins(self, *, before_day: str) -> int:
        """Forget identifiers last seen before ``before_day``; return how many were removed."""
        sql = "DELETE FROM login_activity WHERE last_day < $1"
        status = await self._run(lambda c: c.execute(sql, before_day))
        return int(str(status).rsplit(" ", 1)[-1])

    # --- end admin queries ---

    # --- brute force and rate limits (hardening issue) ---
    async def limit_attempt(
        self, key: str, rule: LimitRule, *, now: float, subject: str | None = None
    ) -> LimitDecision:
        """Count one attempt on ``key`` under ``rule`` (compare-and-swap on ``version``)."""
        select = "SELECT count, window_start, blocked_until, version FROM limits WHERE key = $1"
        insert = (
            "INSERT INTO limits (count, window_start, blocked_until, version, key, subject)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING RETURNING key"
        )
        update = (
            "UPDATE limits SET count = $1, window_start = $2, blocked_until = $3, version = $4"
            " WHERE key = $5 AND version = $6 RETURNING key"
        )

        async def load() -> LimitState | None:
            row = await self._run(lambda c: c.fetchrow(select, key))
            return LimitState(*row) if row is not None else None

        async def write(old: LimitState | None, new: LimitState) -> bool:
            fields = (new.count, new.window_start, new.blocked_until, new.version, key)
            if old is None:
                done = await self._run(lambda c: c.fetchval(insert, *fields, subject))
            else:
                done = await self._run(lambda c: c.fetchval(update, *fields, old.version))
            return done is not None

        return await limits.apply(load, write, rule, now)

    async def limit_refund(self, key: str) -> None:
        """Take one attempt back off ``key`` (it turned out to succeed); a block stays."""
        sql = (
            "UPDATE limits SET count = GREATEST(count - 1, 0), version = version + 1"
            " WHERE key = $1"
        )
        await self._run(lambda c: c.execute(sql, key))

    async def limit_clear(self, keys: Sequence[str] = (), *, subject: str | None = None) -> int:
        """Delete the counters ``keys`` and every counter of ``subject``; return how many."""
        sql = "DELETE FROM limits WHERE key = ANY($1::text[]) OR subject = $2"
        status = await self._run(lambda c: c.execute(sql, list(keys), subject))
        return int(status.split()[-1])

    async def limit_purge(self, before: float) -> int:
        """Delete counters whose window began and whose block ended before ``before``."""
        sql = "DELETE FROM limits WHERE window_start < $1 AND blocked_until < $1"
        status = await self._run(lambda c: c.execute(sql, before))
        return int(status.split()[-1])

    # --- end brute force and rate limits ---

    async def get_setting(self, key: str) -> str | None:
        """Return a persisted setting (such as ``mode``)."""
        sql = "SELECT value FROM settings WHERE key = $1"
        value = await self._run(lambda c: c.fetchval(sql, key))
        return str(value) if value is not None else None

    async def set_setting(self, key: str, value: str) -> None:
        """Persist a setting and notify every replica's ``listen_settings`` at commit."""
        payload = orjson.dumps([key, value]).decode()

        async def op(conn: Any) -> None:
            # One transaction: a listener never hears of a value that was not stored, and
            # a stored value is always announced.
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)"
                    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    key,
                    value,
                )
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

        await self._run(op)

    async def incr(self, name: str, n: int = 1, *, day: str | None = None) -> None:
        """Add ``n`` to the counter ``name`` of ``day`` (default today, UTC)."""
        sql = (
            "INSERT INTO counters (day, name, value) VALUES ($1, $2, $3)"
            " ON CONFLICT (day, name) DO UPDATE SET value = counters.value + EXCLUDED.value"
        )
        await self._run(lambda c: c.execute(sql, day or utc_day(), name, n))

    async def counters(self, *, since: str | None = None) -> dict[tuple[str, str], int]:
        """Return ``{(day, name): value}`` for days on or after ``since``."""
        sql = "SELECT day, name, value FROM counters WHERE day >= $1"
        rows = await self._run(lambda c: c.fetch(sql, since or ""))
        return {(r["day"], r["name"]): int(r["value"]) for r in rows}

    async def listen_settings(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(key, value)`` whenever any replica sets a setting.

        After the listening connection drops and comes back, every stored setting is
        replayed to the callbacks, since notifications sent meanwhile are lost.
        """
        async with self._listen_lock:
            if self._listener is None and self._relisten is None:
                self._listener = await self._listen()
            self._callbacks.append(callback)

    async def _listen(self) -> Any:
        """Open a dedicated connection (pooled ones are reset with UNLISTEN) and LISTEN."""
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, server_settings=self._server_settings
            )
        except _DB_ERRORS as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except _DB_ERRORS as exc:
            conn.terminate()
            raise StoreUnavailable(_describe(exc)) from exc
        conn.add_termination_listener(self._on_listener_lost)
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str | bytes) -> None:
        try:
            key, value = orjson.loads(payload)
        except (ValueError, TypeError):  # a hand-made NOTIFY on our channel: not ours to obey
            log.warning("ignored a malformed settings notification")
            return
        for callback in list(self._callbacks):
            try:
                callback(key, value)
            except Exception:
                log.exception("settings callback failed for %r", key)

    def _on_listener_lost(self, conn: Any) -> None:
        self._listener = None
        if not self._closing and self._relisten is None:
            log.warning("PostgreSQL settings listener lost; reconnecting")
            self._relisten = asyncio.create_task(self._listen_again())

    async def _listen_again(self) -> None:
        """Reconnect the listener with backoff until it works or the store closes."""
        for attempt in itertools.count():
            await asyncio.sleep(RELISTEN_DELAYS[min(attempt, len(RELISTEN_DELAYS) - 1)])
            conn = None
            try:
                conn = await self._listen()
                # LISTEN is in place before this read, so no change can fall in between.
                rows = await conn.fetch("SELECT key, value FROM settings ORDER BY key")
            except BaseException as exc:  # cancelled by close() included: never leak conn
                if conn is not None:
                    conn.terminate()
                if not isinstance(exc, (StoreUnavailable, *_DB_ERRORS)):
                    raise
                log.warning("settings listener still down: %s", _describe(exc))
                continue
            self._listener, self._relisten = conn, None
            for row in rows:
                self._on_notify(conn, 0, self.channel, orjson.dumps([row["key"], row["value"]]))
            log.info("PostgreSQL settings listener reconnected")
            return


def _describe(exc: BaseException) -> str:
    # SECURITY: not str(exc), whose PostgreSQL DETAIL can quote a failing row, hash included.
    text = exc.args[0] if isinstance(exc, asyncpg.PostgresError) and exc.args else exc
    return f"PostgreSQL: {type(exc).__name__}: {text}"


# --- replicas (PostgreSQL issue) ---
_UPSERT_USERS = (
    "INSERT INTO users (id, legacy_id, email, username, password_hash, profile, source,"
    " created_at, last_login_at, login_count, blocked, session_epoch)"
    " SELECT u.id, u.legacy_id, u.email, u.username, u.password_hash, u.profile::jsonb,"
    " u.source, u.created_at, u.last_login_at, u.login_count, u.blocked, u.session_epoch"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::float8[], $9::float8[], $10::int[], $11::bool[], $12::int[])"
    " AS u(id, legacy_id, email, username, password_hash, profile, source, created_at,"
    " last_login_at, login_count, blocked, session_epoch)"
    " ON CONFLICT (id) DO UPDATE SET legacy_id = EXCLUDED.legacy_id, email = EXCLUDED.email,"
    " username = EXCLUDED.username, password_hash = EXCLUDED.password_hash,"
    " profile = EXCLUDED.profile, source = EXCLUDED.source, created_at = EXCLUDED.created_at,"
    " last_login_at = EXCLUDED.last_login_at, login_count = EXCLUDED.login_count,"
    " blocked = EXCLUDED.blocked, session_epoch = EXCLUDED.session_epoch"
)


def _user_row(user: User) -> tuple[Any, ...]:
    profile = orjson.dumps(user.profile, option=orjson.OPT_NON_STR_KEYS).decode()
    return (
        user.id,
        user.legacy_id,
        _norm(user.email),
        _norm(user.username),
        user.password_hash,
        profile,
        user.source,
        user.created_at,
        user.last_login_at,
        user.login_count,
        user.blocked,
        user.session_epoch,
    )


def _user(row: Any) -> User:
    # By name: a column that a later migration adds is ignored rather than shifting others.
    values = {name: row[name] for name in User.__slots__}
    values["profile"] = orjson.loads(values["profile"])
    return User(**values)


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


def _norm(identifier: str | None) -> str | None:
    return normalise_identifier(identifier) if identifier is not None else None


# --- reset tokens, outbox (reset/sign-up issue) ---
_TOKEN_BY_HASH = "SELECT * FROM reset_tokens WHERE token_hash = $1"


def _reset_token(row: Any) -> ResetToken:
    values = {name: row[name] for name in ResetToken.__slots__}
    if values["profile"] is not None:
        values["profile"] = orjson.loads(values["profile"])
    return ResetToken(**values)


def _outbox_mail(row: Any) -> OutboxMail:
    values = {name: row[name] for name in OutboxMail.__slots__}
    values["data"] = orjson.loads(values["data"])
    return OutboxMail(**values)
