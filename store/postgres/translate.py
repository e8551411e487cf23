"""asyncpg errors as ``store.errors``: the one place this happens for PostgreSQL.

A unique violation is ``UserExists(field)``; everything else the database or the network
does is ``StoreUnavailable``. ``connection`` (the pool) and ``listener`` (LISTEN) both use it.
"""

from __future__ import annotations

import asyncpg

from store.errors import StoreError, StoreUnavailable, UserExists

# Everything the database or the network raises; OSError includes TimeoutError.
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
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


def describe(exc: BaseException) -> str:
    """What went wrong, fit for a log line or a ``StoreUnavailable``."""
    # SECURITY: not str(exc), whose PostgreSQL DETAIL can quote a failing row, hash included.
    text = exc.args[0] if isinstance(exc, asyncpg.PostgresError) and exc.args else exc
    return f"PostgreSQL: {type(exc).__name__}: {text}"


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The store error for a failure of the database or the network."""
    return StoreUnavailable(describe(exc))


def unique_violation(exc: asyncpg.UniqueViolationError) -> StoreError:
    """``UserExists(field)`` for a taken email, username or legacy id; else unavailable."""
    field = (exc.constraint_name or "").removeprefix("users_").removesuffix("_key")
    if field not in _UNIQUE_FIELDS:
        return unavailable(exc)
    return UserExists(field)


def connection_lost(exc: BaseException) -> bool:
    """Whether the connection failed (not the statement), so a retry may succeed."""
    return isinstance(exc, _LOST) and not isinstance(exc, TimeoutError)
