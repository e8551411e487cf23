"""Versioned schema migrations: numbered ``.sql`` files per backend, applied in order once.

Each backend keeps a folder ``store/migrations/<backend>/`` of files named ``NNNN_what.sql``
and records every applied version in its ``schema_version`` table. This module holds what
every backend shares: finding the files, ordering them, and deciding what is still pending.
Running the SQL (and the locking around it) is the backend's job, since each database has
its own way to make a migration atomic across replicas.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from store.errors import StoreUnavailable

# Portable across SQLite and PostgreSQL, so both backends create the same table.
SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version number, its name and its SQL script."""

    version: int
    name: str
    sql: str


def migrations_folder(backend: str) -> Traversable:
    """Return the packaged migrations folder of ``backend`` (``sqlite``, ``postgres``)."""
    # importlib.resources rather than __file__, so an installed wheel finds its package data.
    return resources.files("store") / "migrations" / backend


def load_migrations(folder: Traversable) -> list[Migration]:
    """Return the ``NNNN_name.sql`` files of ``folder`` as migrations, lowest version first.

    Raises:
        ValueError: a ``.sql`` file is misnamed, or two files share a version.
    """
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            # A silently skipped file would be a schema change that never happens.
            raise ValueError(f"migration {entry.name!r} is not named NNNN_name.sql")
        version = int(match["version"])
        if version == 0:
            raise ValueError(f"migration {entry.name!r}: versions start at 0001")
        if version in found:
            raise ValueError(
                f"migrations {found[version].name!r} and {entry.name!r} share version {version}"
            )
        found[version] = Migration(version, entry.name, entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def pending(migrations: Sequence[Migration], applied: Collection[int]) -> list[Migration]:
    """Return the migrations not yet in ``applied``, in order.

    Raises:
        StoreUnavailable: the database holds versions this code does not know (it was
            migrated by a newer authshim); running on it could corrupt it.
    """
    known = {m.version for m in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise StoreUnavailable(
            f"database schema has versions {unknown} that this authshim does not know; "
            "upgrade authshim before using this database"
        )
    return [m for m in migrations if m.version not in applied]


def split_statements(script: str) -> Iterable[str]:
    """Yield the complete SQL statements of ``script`` (semicolons in strings are kept).

    Uses SQLite's own notion of a complete statement, so it suits SQLite scripts; a backend
    whose driver runs a whole script in one call (asyncpg) does not need it.
    """
    # sqlite3's executescript would split too, but it commits any open transaction first,
    # and a migration must run inside the transaction that records its version.
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    leftover = [ln for ln in buffer.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
    if leftover:
        raise ValueError(f"migration ends inside a statement: {leftover[0].strip()[:60]!r}")
