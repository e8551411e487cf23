"""Pure helpers behind the admin queries every backend shares: prefix ranges and search order.

A prefix search runs as up to three index range scans (legacy id, email, username), each
ordered by its own key and limited to one page; ``merge_matches`` then interleaves them. Each
user is matched by exactly one branch (the backends exclude what an earlier branch matches),
so that ``(key, id)`` is a stable, gap-free keyset cursor across pages. A user whose email
and username both match is listed by its email; PostgreSQL reads its username branch as a few
ranges that never meet such users (``split_username_query``), SQLite steps over them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from store.base import User

MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)

SearchCursor = tuple[str, str]  # (matched key, user id) of the last row of a page
ListCursor = tuple[float, str]  # (created_at, user id) of the last row of a page


def prefix_upper_bound(prefix: str) -> str:
    """The least string greater than every string that starts with ``prefix``."""
    if not prefix:
        raise ValueError("an empty prefix has no upper bound")
    last = ord(prefix[-1])
    if last == MAX_CODE_POINT:
        # No code point follows: bound the one before it instead (a superset; callers filter).
        return prefix_upper_bound(prefix[:-1]) if len(prefix) > 1 else chr(MAX_CODE_POINT)
    nxt = last + 1
    if nxt in _SURROGATES:  # not storable as UTF-8: skip to the first code point after them
        nxt = _SURROGATES.stop
    return prefix[:-1] + chr(nxt)


def merge_matches(
    branches: Iterable[Iterable[tuple[str, User]]], prefix: str, limit: int
) -> list[tuple[str, User]]:
    """Interleave per-branch matches in ``(key, id)`` order and keep the first ``limit``."""
    rows = [
        (key, user)
        for branch in branches
        for key, user in branch
        # The legacy-id branch's key is the prefix itself; the others must really start with it.
        if key.startswith(prefix)
    ]
    rows.sort(key=lambda row: (row[0], row[1].id))
    return rows[:limit]


# --- SQL shared by the backends, written with ``?`` marks (``numbered`` turns them into $n) ---


@dataclass(frozen=True, slots=True)
class Columns:
    """How a backend spells the expressions its prefix indexes hold."""

    email: str
    username: str
    # A column every search index carries (SQLite's rowid, an INCLUDEd id on PostgreSQL), so
    # that a page is chosen from the covering index alone; None reads rows as it goes.
    row: str | None = None
    # SQLite: "+" keeps a filter column from steering the search off its prefix index.
    no_index: str = ""


def numbered(sql: str) -> str:
    """``?`` marks as PostgreSQL's ``$1, $2, ...`` (the SQL here holds no literal ``?``)."""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def _filters(
    source: str | None, since: float | None, prefix: str = ""
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if source is not None:
        where.append(f"{prefix}source = ?")
        params.append(source)
    if since is not None:
        where.append(f"{prefix}created_at >= ?")
        params.append(since)
    return where, params


def list_query(
    *, source: str | None, since: float | None, after: ListCursor | None, limit: int
) -> tuple[str, list[Any]]:
    """One page of users in (created_at, id) order: an index range scan whatever the filters."""
    where, params = _filters(source, since)
    if after is not None:
        where.append("(created_at, id) > (?, ?)")
        params += [after[0], after[1]]
    sql = "SELECT * FROM users"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY created_at, id LIMIT ?", [*params, limit]


def _prefix_range(
    col: str,
    lo: str,
    hi: str,
    legacy_id: str,
    filters: tuple[list[str], list[Any]],
    after: SearchCursor | None,
) -> tuple[list[str], list[Any]]:
    """The conditions of one branch: ``col`` in ``[lo, hi)``, past the cursor, not the
    legacy-id match (which the first branch lists), and the source/since filters."""
    conds = [f"{col} >= ?", f"{col} < ?", "(legacy_id IS NULL OR legacy_id <> ?)", *filters[0]]
    values: list[Any] = [lo, hi, legacy_id, *filters[1]]
    if after is not None:
        conds.append(f"({col} > ? OR id > ?)")
        values += [after[0], after[1]]
    return conds, values


def _page_of(cols: Columns, inner: str, values: list[Any], limit: int) -> tuple[str, list[Any]]:
    """Whole rows for the page ``inner`` selects (it selects ``cols.row`` or ``*``)."""
    # The page's rows are chosen from the covering index alone (skipping what an earlier
    # branch matched costs no row read); only the chosen ones are then read whole.
    if cols.row is None:
        return inner, [*values, limit]
    return f"SELECT * FROM users WHERE {cols.row} IN ({inner})", [*values, limit]  # noqa: S608


def search_queries(
    cols: Columns,
    prefix: str,
    legacy_id: str,
    *,
    source: str | None,
    since: float | None,
    after: SearchCursor | None,
    limit: int,
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]], tuple[str, list[Any]]]:
    """The legacy-id, email and username branches of a prefix search, each one page long.

    Each branch leaves out what an earlier one matches, so every user has exactly one key.
    """
    hi = prefix_upper_bound(prefix)
    lo = max(prefix, after[0]) if after else prefix
    filters = _filters(source, since, cols.no_index)
    legacy = (
        " AND ".join(["SELECT * FROM users WHERE legacy_id = ?", *filters[0]]),
        [legacy_id, *filters[1]],
    )
    selected = cols.row or "*"

    def branch(col: str, extra: list[str], extra_params: list[Any]) -> tuple[str, list[Any]]:
        conds, values = _prefix_range(col, lo, hi, legacy_id, filters, after)
        # Only the backend's constant column expressions and ? marks are formatted in.
        where_sql = " AND ".join([*conds[:3], *extra, *conds[3:]])
        inner = f"SELECT {selected} FROM users WHERE {where_sql} ORDER BY {col} LIMIT ?"  # noqa: S608
        return _page_of(cols, inner, [*values[:3], *extra_params, *values[3:]], limit)

    email = branch(cols.email, [], [])
    username = branch(cols.username, [_email_outside(cols)], [prefix, hi])
    return legacy, email, username


def _email_outside(cols: Columns) -> str:
    """The email does not start with the prefix (two ? marks: the prefix, its upper bound)."""
    return f"({cols.email} IS NULL OR {cols.email} < ? OR {cols.email} >= ?)"


SPLIT_CAP = 32  # search_split's cap (postgresql/0007_names.sql)


def split_username_query(
    cols: Columns,
    split: str,
    prefix: str,
    legacy_id: str,
    *,
    source: str | None,
    since: float | None,
    after: SearchCursor | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """PostgreSQL's username branch: the same rows as ``search_queries``' third, read without
    skipping the users whose email matched too.

    ``split`` is the indexed length of the shared prefix of email and username (capped at
    ``SPLIT_CAP``): both start with ``prefix`` exactly when it is at least ``len(prefix)``, so
    the branch reads one ordered range per smaller value and merges them.
    """
    hi = prefix_upper_bound(prefix)
    lo = max(prefix, after[0]) if after else prefix
    if cols.row is None:
        raise ValueError("the username arms select a row column")
    filters = _filters(source, since, cols.no_index)
    arms: list[str] = []
    values: list[Any] = []
    # Keys from len(prefix) up are users whose email matched too: the email branch lists them.
    for key in range(min(len(prefix), SPLIT_CAP + 1)):
        conds, arm_values = _prefix_range(cols.username, lo, hi, legacy_id, filters, after)
        if key == SPLIT_CAP:  # "SPLIT_CAP or more": the email must be tested
            conds.append(_email_outside(cols))
            arm_values += [prefix, hi]
        # key is an int; only constant expressions and ? marks are formatted in.
        where_sql = " AND ".join([f"{split} = {key:d}", *conds])
        arms.append(
            f"(SELECT {cols.row}, {cols.username} AS name FROM users"  # noqa: S608
            f" WHERE {where_sql} ORDER BY {cols.username} LIMIT ?)"
        )
        values += [*arm_values, limit]
    union = " UNION ALL ".join(arms)
    inner = f"SELECT {cols.row} FROM ({union}) AS arms ORDER BY name LIMIT ?"  # noqa: S608
    return _page_of(cols, inner, values, limit)


def search_keys(
    prefix: str,
    after: SearchCursor | None,
    legacy: Iterable[User],
    emails: Iterable[User],
    usernames: Iterable[User],
) -> list[list[tuple[str, User]]]:
    """Attach each branch's key to its rows; the legacy-id match is kept only past the cursor."""
    first = [(prefix, u) for u in legacy if after is None or (prefix, u.id) > after]
    return [first, [(u.email or "", u) for u in emails], [(u.username or "", u) for u in usernames]]


def day_of(day_number: int) -> str:
    """The UTC day (YYYY-MM-DD) of a count of days since the epoch."""
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=day_number)).strftime(
        "%Y-%m-%d"
    )


def merge_logins(entries: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """One entry per identifier: migrated when any of its logins that day was."""
    merged: dict[str, bool] = {}
    for ident, migrated in entries:
        merged[ident] = merged.get(ident, False) or migrated
    return merged


# The later day wins; on the same day, migrated wins (a capture follows a legacy login).
NOTE_LOGINS_UPDATE = (
    " ON CONFLICT (ident) DO UPDATE SET"
    " migrated = CASE WHEN excluded.last_day > login_activity.last_day THEN excluded.migrated"
    " WHEN excluded.last_day = login_activity.last_day"
    " THEN (login_activity.migrated OR excluded.migrated) ELSE login_activity.migrated END,"
    " last_day = CASE WHEN excluded.last_day > login_activity.last_day THEN excluded.last_day"
    " ELSE login_activity.last_day END"
)
