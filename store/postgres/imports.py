"""PostgreSQL: users imported with a legacy hash (issue 17): the bulk import and the upgrade
of a legacy hash to argon2id at the first local login."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from store.base import NewUser, new_sequential_user_id
from store.postgres.connection import PostgresConnection
from store.values import norm, profile_json, username_columns

_INCOMING = (
    "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])"
    " AS v(key, email, username, username_key, password_hash, profile)"
)
# Only a user the import itself wrote, who never logged in here and never had a password set
# or sessions revoked here, is rewritten: anything else belongs to authshim now.
# SECURITY: never take an email or username another user holds (no silent account merge).
_UPDATE = (
    "UPDATE users u SET email = v.email, username = v.username, username_key = v.username_key,"
    " password_hash = v.password_hash, profile = v.profile::jsonb"
    " FROM {incoming} WHERE {match} AND u.source = 'import' AND u.login_count = 0"
    " AND u.session_epoch = 0"
    " AND (u.email, u.username, u.password_hash, u.profile)"
    " IS DISTINCT FROM (v.email, v.username, v.password_hash, v.profile::jsonb)"
    " AND NOT EXISTS (SELECT 1 FROM users o WHERE lower(o.email) = v.email AND o.id <> u.id)"
    " AND NOT EXISTS (SELECT 1 FROM users o WHERE o.username_key = v.username_key"
    " AND o.id <> u.id)"
    " RETURNING u.id"
)
# Only constant fragments are formatted in; every value is a $n parameter. Emails and
# usernames arrive normalised (lower-case); lower() is what the unique indexes are on.
_UPDATE_BY_LEGACY_ID = _UPDATE.format(incoming=_INCOMING, match="u.legacy_id = v.key")
_UPDATE_BY_EMAIL = _UPDATE.format(
    incoming=_INCOMING, match="u.legacy_id IS NULL AND lower(u.email) = v.key"
)
_INSERT = (
    "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash, profile,"
    " source, created_at)"
    " SELECT v.id, v.legacy_id, v.email, v.username, v.username_key, v.password_hash,"
    " v.profile::jsonb, v.source, $9 FROM unnest($1::text[], $2::text[], $3::text[],"
    " $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) AS v(id, legacy_id, email,"
    " username, username_key, password_hash, profile, source) ON CONFLICT DO NOTHING RETURNING id"
)


class PostgresImports(PostgresConnection):
    """The bulk import and the guarded upgrade of an imported hash."""

    async def import_users(self, users: Sequence[NewUser]) -> tuple[int, int]:
        """Insert new users, rewrite untouched imported ones; return (inserted, updated)."""
        rows = [_row(user, self.username_case) for user in users]
        by_id = [r for r in rows if r[1]]
        by_email = [r for r in rows if not r[1]]
        now = time.time()

        async def run(conn: Any) -> tuple[int, int]:
            async with conn.transaction():
                updated = 0
                for sql, part in ((_UPDATE_BY_LEGACY_ID, by_id), (_UPDATE_BY_EMAIL, by_email)):
                    if part:
                        keys = [r[1] or r[2] for r in part]
                        columns = [list(c) for c in zip(*(r[2:7] for r in part), strict=True)]
                        updated += len(await conn.fetch(sql, keys, *columns))
                inserted = 0
                if rows:
                    columns = [list(c) for c in zip(*rows, strict=True)]
                    inserted = len(await conn.fetch(_INSERT, *columns, now))
                return inserted, updated

        # A retried batch (the connection died after COMMIT) changes nothing the second time:
        # the rows it updated are no longer different, the ones it inserted conflict.
        return await self._run(run)

    async def upgrade_password(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` and count the login, only if the stored hash
        is still ``old_hash``; return whether it was."""
        sql = (
            "UPDATE users SET password_hash = $3, login_count = login_count + 1,"
            " last_login_at = $4 WHERE id = $1 AND password_hash = $2 RETURNING id"
        )
        found = await self._run(lambda c: c.fetch(sql, user_id, old_hash, new_hash, time.time()))
        return bool(found)


def _row(user: NewUser, case: str) -> tuple[str | None, ...]:
    return (
        new_sequential_user_id(),
        user.legacy_id,
        norm(user.email),
        *username_columns(user.username, case),
        user.password_hash,
        profile_json(user.profile),
        user.source,
    )
