"""Bulk-generated users for the admin tests and benchmark, written straight into the tables.

Going through ``insert_user`` one row at a time costs a commit each (seconds per thousand on
SQLite with synchronous=FULL); these helpers write many rows per statement instead. Every
user shares one precomputed hash: what is measured is search and pagination, not argon2.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from store.factory import split_schema, sqlite_path

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
DOMAINS = ("example.com", "mail.test", "corp.example")
SOURCES = ("login", "login", "login", "reset", "signup", "import")
BASE_TIME = 1_700_000_000.0  # 2023-11-14: users are created one a minute from here
# argon2id of "generated-password" at t=1, m=64, p=1 (the tests' cheap parameters).
HASH = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$9vNw4m9yQm1b6XyW3bqz0Q"


@dataclass(frozen=True, slots=True)
class Generated:
    """One generated user's columns."""

    id: str
    legacy_id: str
    email: str
    username: str
    source: str
    created_at: float


def generate(
    n: int, start: int = 0, *, base: float = BASE_TIME, step: float = 60.0
) -> Iterator[Generated]:
    """``n`` distinct users created ``step`` seconds apart from ``base``; names repeat across
    users, so that prefixes match many of them."""
    for i in range(start, start + n):
        name = NAMES[i % len(NAMES)]
        yield Generated(
            id=f"{i:032x}",
            legacy_id=str(500_000 + i),
            email=f"{name}{i}@{DOMAINS[i % len(DOMAINS)]}",
            username=f"{name}.{i}",
            source=SOURCES[i % len(SOURCES)],
            created_at=base + step * i,
        )


def _row(g: Generated) -> tuple[object, ...]:
    profile = orjson.dumps({"id": g.legacy_id, "email": g.email, "username": g.username})
    # The username key as the store folds it under username_case "lower" (migration 0012).
    return (
        g.id, g.legacy_id, g.email, g.username, g.username.lower(), HASH, profile.decode(),
        g.source, g.created_at,
    )  # fmt: skip


_COLUMNS = (
    "id, legacy_id, email, username, username_key, password_hash, profile, source, created_at"
)


async def seed(
    store_url: str, n: int, start: int = 0, *, base: float = BASE_TIME, step: float = 60.0
) -> None:
    """Write ``n`` generated users into the (already migrated) store at ``store_url``."""
    users = generate(n, start, base=base, step=step)
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(sqlite_path(store_url))
        try:
            with conn:
                conn.executemany(
                    f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (_row(g) for g in users),
                )
        finally:
            conn.close()
        return
    import asyncpg

    dsn, schema = split_schema(store_url)
    pg = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
    try:
        records = [_row(g) for g in users]
        await pg.copy_records_to_table(
            "users", records=records, columns=_COLUMNS.split(", "), schema_name=schema
        )
    finally:
        await pg.close()
