"""SQLite: users imported with a legacy hash (issue 17): the bulk import and the upgrade of a
legacy hash to argon2id at the first local login."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

from store.base import NewUser, new_sequential_user_id
from store.sqlite.connection import SQLiteConnection, transaction
from store.values import norm, profile_json, username_columns

# Only a user the import itself wrote, who never logged in here and never had a password set
# or sessions revoked here, is rewritten: anything else belongs to authshim now.
_UNTOUCHED = "source = 'import' AND login_count = 0 AND session_epoch = 0"
_CHANGED = (
    "(email IS NOT :email OR username IS NOT :username OR password_hash IS NOT :hash"
    " OR profile IS NOT :profile)"
)
# SECURITY: never take an email or username another user holds (no silent account merge).
_FREE = (
    "NOT EXISTS (SELECT 1 FROM users o WHERE o.email = :email AND o.id <> users.id)"
    " AND NOT EXISTS (SELECT 1 FROM users o WHERE o.username_key = :username_key"
    " AND o.id <> users.id)"
)
_SET = (
    "SET email = :email, username = :username, username_key = :username_key,"
    " password_hash = :hash, profile = :profile"
)
_UPDATE_BY_LEGACY_ID = (
    f"UPDATE OR IGNORE users {_SET} WHERE legacy_id = :key AND {_UNTOUCHED} AND {_CHANGED}"
    f" AND {_FREE}"
)
_UPDATE_BY_EMAIL = (
    f"UPDATE OR IGNORE users {_SET} WHERE legacy_id IS NULL AND email = :key AND {_UNTOUCHED}"
    f" AND {_CHANGED} AND {_FREE}"
)
_INSERT = (
    "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash, profile,"
    " source, created_at) VALUES (:id, :legacy_id, :email, :username, :username_key, :hash,"
    " :profile, :source, :now)"
    " ON CONFLICT DO NOTHING"
)


class SQLiteImports(SQLiteConnection):
    """The bulk import and the guarded upgrade of an imported hash."""

    async def import_users(self, users: Sequence[NewUser]) -> tuple[int, int]:
        """Insert new users, rewrite untouched imported ones; return (inserted, updated)."""
        now = time.time()
        rows = [_row(user, now, self.username_case) for user in users]

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            def work() -> tuple[int, int]:
                # One look-up for the batch, so that a first import (nobody stored yet) runs
                # no UPDATE at all: a third of its time.
                held = _held(conn, rows)
                before = conn.total_changes
                by_id = [r for r in rows if r["legacy_id"] and ("id", r["key"]) in held]
                by_email = [r for r in rows if not r["legacy_id"] and ("email", r["key"]) in held]
                conn.executemany(_UPDATE_BY_LEGACY_ID, by_id)
                conn.executemany(_UPDATE_BY_EMAIL, by_email)
                updated = conn.total_changes - before
                conn.executemany(_INSERT, [r for r in rows if (r["kind"], r["key"]) not in held])
                return conn.total_changes - before - updated, updated

            return transaction(conn, work)

        return await self._in_thread(run)

    async def upgrade_password(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` and count the login, only if the stored hash
        is still ``old_hash``; return whether it was."""
        found = await self._fetch(
            "UPDATE users SET password_hash = ?, login_count = login_count + 1,"
            " last_login_at = ? WHERE id = ? AND password_hash = ? RETURNING id",
            (new_hash, time.time(), user_id, old_hash),
        )
        return bool(found)


def _held(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Which rows' keys (legacy id, or email when there is none) the store already holds."""
    ids = orjson.dumps([r["key"] for r in rows if r["legacy_id"]]).decode()
    emails = orjson.dumps([r["key"] for r in rows if not r["legacy_id"]]).decode()
    found = conn.execute(
        "SELECT 'id', legacy_id FROM users WHERE legacy_id IN (SELECT value FROM json_each(?))"
        " UNION ALL SELECT 'email', email FROM users WHERE legacy_id IS NULL"
        " AND email IN (SELECT value FROM json_each(?))",
        (ids, emails),
    ).fetchall()
    return {(str(kind), str(key)) for kind, key in found}


def _row(user: NewUser, now: float, case: str) -> dict[str, Any]:
    email = norm(user.email)
    username, key = username_columns(user.username, case)
    return {
        "id": new_sequential_user_id(),
        "legacy_id": user.legacy_id,
        "key": user.legacy_id or email,
        "kind": "id" if user.legacy_id else "email",
        "email": email,
        "username": username,
        "username_key": key,
        "hash": user.password_hash,
        "profile": profile_json(user.profile),
        "source": user.source,
        "now": now,
    }
