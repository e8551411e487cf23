"""The SQLite backend: one aiosqlite connection, WAL, every write a single statement.

aiosqlite runs the connection on one thread and executes calls in the order they were
made, so one connection serialises the store without an asyncio lock. Every write is a
single statement in autocommit mode, hence its own atomic transaction: nothing can be
half-written and no statement of one task can land inside another task's transaction.
Only migrations, run by ``open()`` before the store is shared, use explicit transactions.

``connection`` opens, migrates and runs statements, and is where sqlite3 errors become
``store.errors`` (nowhere else); each other module adds the methods of one concern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.sqlite.admin import SQLiteAdmin
from store.sqlite.imports import SQLiteImports
from store.sqlite.limits import SQLiteLimits
from store.sqlite.pending import SQLitePending
from store.sqlite.replicas import SQLiteReplicas
from store.sqlite.reset import SQLiteReset
from store.sqlite.reset_queue import SQLiteResetQueue
from store.sqlite.sessions import SQLiteSessions
from store.sqlite.settings import SQLiteSettings
from store.sqlite.users import SQLiteUsers

if TYPE_CHECKING:
    from store.base import Store

__all__ = ["SQLiteStore"]


class SQLiteStore(
    SQLitePending,
    SQLiteUsers,
    SQLiteReset,
    SQLiteResetQueue,
    SQLiteSettings,
    SQLiteLimits,
    SQLiteAdmin,
    SQLiteReplicas,
    SQLiteSessions,
    SQLiteImports,
):
    """The Store on a SQLite file, for a single host (several processes may share it)."""


if TYPE_CHECKING:

    def _is_a_store(store: SQLiteStore) -> Store:  # mypy: the parts add up to the protocol
        return store
