"""PostgreSQL backend (asyncpg): one schema shared by every authshim replica.

``connection`` holds the pool (open, migrate, close, one retry on a lost connection) and
``listener`` the LISTEN connection that hears settings change; asyncpg errors become
``store.errors`` in ``translate`` and only there: a unique violation is ``UserExists(field)``,
everything else the database or the network does is ``StoreUnavailable``. Each other module
adds the methods of one concern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.postgres.admin import PostgresAdmin
from store.postgres.imports import PostgresImports
from store.postgres.limits import PostgresLimits
from store.postgres.pending import PostgresPending
from store.postgres.replicas import PostgresReplicas
from store.postgres.reset import PostgresReset
from store.postgres.reset_queue import PostgresResetQueue
from store.postgres.sessions import PostgresSessions
from store.postgres.settings import PostgresSettings
from store.postgres.users import PostgresUsers

if TYPE_CHECKING:
    from store.base import Store

__all__ = ["PostgresStore"]


class PostgresStore(
    PostgresPending,
    PostgresUsers,
    PostgresReset,
    PostgresResetQueue,
    PostgresSettings,
    PostgresLimits,
    PostgresAdmin,
    PostgresReplicas,
    PostgresSessions,
    PostgresImports,
):
    """A Store on PostgreSQL, safe to share between several replicas."""


if TYPE_CHECKING:

    def _is_a_store(store: PostgresStore) -> Store:  # mypy: the parts add up to the protocol
        return store
