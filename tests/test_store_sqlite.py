"""SQLite specifics: URLs, pragmas, indexes, migrations and error translation."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from store.base import NewResetToken, NewUser
from store.errors import StoreUnavailable, UserExists
from store.factory import create_store, split_schema, sqlite_path
from store.limits import LimitAttempt, LimitRule
from store.schema import Migration, load_migrations, migrations_folder, pending, split_statements
from store.sqlite import SQLiteStore

# Every packaged migration: later issues add their own, so no test hard-codes how many there are.
PACKAGED = load_migrations(migrations_folder("sqlite"))

HASH = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An opened SQLite store in this test's folder."""
    s = SQLiteStore(tmp_path / "authshim.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to inspect a store's file behind its back."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///authshim.db", "authshim.db"),
        ("sqlite:///./data/authshim.db", "./data/authshim.db"),
        ("sqlite:////var/lib/authshim.db", "/var/lib/authshim.db"),
        ("SQLite:///x.db", "x.db"),
    ],
)
def test_sqlite_url_gives_the_path(url: str, path: str) -> None:
    """Three slashes then the path: relative, ./relative or /absolute."""
    store = create_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == path == sqlite_path(url)


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "sqlite://"])
def test_malformed_sqlite_url_is_refused(url: str) -> None:
    """A SQLite URL without the third slash or without a path is a ValueError."""
    with pytest.raises(ValueError, match="sqlite:///path"):
        create_store(url)


@pytest.mark.parametrize("url", ["mysql://db/x", "http://x", "authshim.db"])
def test_unknown_scheme_is_refused_by_name(url: str) -> None:
    """Anything but sqlite/postgresql is a ValueError that names the scheme."""
    with pytest.raises(ValueError, match="scheme"):
        create_store(url)


@pytest.mark.parametrize(
    ("url", "dsn", "schema"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db", "public"),
        ("postgres://u@h:5433/db?schema=tenant_1", "postgres://u@h:5433/db", "tenant_1"),
        (
            "postgresql://u@h/db?sslmode=require&schema=s&application_name=a",
            "postgresql://u@h/db?sslmode=require&application_name=a",
            "s",
        ),
    ],
)
def test_postgres_schema_is_split_off_the_dsn(url: str, dsn: str, schema: str) -> None:
    """?schema=NAME leaves the DSN, other query parameters stay in it."""
    assert split_schema(url) == (dsn, schema)


@pytest.mark.parametrize("schema", ['x"; DROP TABLE users; --', "1abc", "a-b", ""])
def test_postgres_schema_must_be_an_identifier(schema: str) -> None:
    """A schema name that is no SQL identifier is refused before any connection."""
    with pytest.raises(ValueError, match="identifier"):
        split_schema(f"postgresql://u@h/db?schema={schema}")


def test_postgres_url_builds_the_postgres_store_lazily() -> None:
    """A postgresql URL yields the PostgreSQL backend, unopened, with the split schema."""
    pytest.importorskip("asyncpg")
    store = create_store("postgresql://u@127.0.0.1/db?schema=abc", pool_min=1, pool_max=3)
    assert type(store).__name__ == "PostgresStore"


# -- file, pragmas, indexes -----------------------------------------------------------------


async def test_open_creates_the_folder_and_uses_wal(tmp_path: Path) -> None:
    """open() creates missing parent folders and leaves the file in WAL mode."""
    path = tmp_path / "a" / "b" / "authshim.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version, name FROM schema_version").fetchall() == [
            (m.version, m.name) for m in PACKAGED
        ]


async def test_bookkeeping_skips_the_fsync_and_everything_else_keeps_it(db: SQLiteStore) -> None:
    """Counters and login counts commit with synchronous = NORMAL; the connection is back at
    FULL for every other write, a password change included, and after a failed one too."""
    rule = LimitRule(threshold=5, window=60.0, block=1.0, block_max=2.0)

    async def synchronous() -> int:
        return int((await db._fetch("PRAGMA synchronous", ()))[0][0])

    user = await db.insert_user(NewUser(email="bob@x.io", username="bob", password_hash=HASH))
    assert await synchronous() == 2  # FULL
    await db.limit_attempts([LimitAttempt("ip", rule)], now=1.0)
    await db.record_logins([(user.id, 2.0)])
    await db.limit_settle(refund=["ip"])
    assert await synchronous() == 2
    await db.set_pragma("query_only", 1)
    with pytest.raises(StoreUnavailable):
        await db.record_logins([(user.id, 3.0)])
    await db.set_pragma("query_only", 0)
    assert await synchronous() == 2


async def test_find_user_is_an_index_lookup(db: SQLiteStore, tmp_path: Path) -> None:
    """The find_user query searches the email and username-key indexes and scans nothing."""
    sql = (
        "EXPLAIN QUERY PLAN SELECT * FROM users WHERE email = ?1 OR username_key = ?2"
        " ORDER BY email = ?1 DESC LIMIT 1"
    )
    with raw(tmp_path / "authshim.db") as conn:
        plan = " | ".join(row[3] for row in conn.execute(sql, ("bob", "bob")))
    assert "SCAN users" not in plan
    assert "USING INDEX" in plan and "(email=?)" in plan and "(username_key=?)" in plan


async def test_mixed_case_lookup_is_folded(db: SQLiteStore) -> None:
    """SQLite folds the identifier itself, so a mixed-case lookup still finds the user."""
    user = await db.insert_user(NewUser(email="bob@x.io", username="bob", password_hash=HASH))
    assert await db.find_user(" Bob@X.IO ") == user



async def test_unstorable_text_never_crashes(db: SQLiteStore) -> None:
    """A lone surrogate finds nobody, and writing one is a StoreError, not a crash."""
    assert await db.find_user("bob\ud800") is None
    with pytest.raises(StoreUnavailable):
        await db.set_setting("mode", "\ud800")


async def test_nocase_collation_guards_the_unique_indexes(db: SQLiteStore, tmp_path: Path) -> None:
    """Even a row written behind the store's back cannot repeat an email in other case."""
    await db.insert_user(NewUser(email="bob@x.io", username="bob", password_hash=HASH))
    with raw(tmp_path / "authshim.db") as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO users (id, email, password_hash, source, created_at)"
            " VALUES ('x', 'BOB@X.IO', 'h', 'login', 0)"
        )




# -- errors ---------------------------------------------------------------------------------


async def test_unique_violation_is_user_exists_only(db: SQLiteStore) -> None:
    """A unique violation maps to UserExists; the store stays usable afterwards."""
    await db.insert_user(NewUser(email="bob@x.io", username=None, password_hash=HASH))
    with pytest.raises(UserExists):
        await db.insert_user(NewUser(email="bob@x.io", username=None, password_hash=HASH))
    assert await db.count_users() == 1


async def test_not_a_database_is_store_unavailable(tmp_path: Path) -> None:
    """A file that is not SQLite makes open() raise StoreUnavailable, and nothing leaks."""
    path = tmp_path / "authshim.db"
    path.write_bytes(b"this is not a database" * 100)
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.count_users()


async def test_unusable_path_is_store_unavailable(tmp_path: Path) -> None:
    """A path under a regular file cannot be created: StoreUnavailable, not OSError."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable):
        await SQLiteStore(tmp_path / "file" / "authshim.db").open()


async def test_use_before_open_and_after_close_is_store_unavailable(tmp_path: Path) -> None:
    """Calls on a store that is not open raise StoreUnavailable."""
    store = SQLiteStore(tmp_path / "authshim.db")
    with pytest.raises(StoreUnavailable):
        await store.get_setting("mode")
    await store.open()
    await store.close()
    await store.close()  # closing twice is harmless
    with pytest.raises(StoreUnavailable):
        await store.get_setting("mode")


async def test_dropped_table_is_store_unavailable(db: SQLiteStore, tmp_path: Path) -> None:
    """Any other sqlite3 error becomes StoreUnavailable."""
    with raw(tmp_path / "authshim.db") as conn:
        conn.execute("DROP TABLE counters")
    with pytest.raises(StoreUnavailable):
        await db.incr("x")


# -- migrations -----------------------------------------------------------------------------


async def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    """A second open() of a migrated file keeps one schema_version row per migration."""
    for _ in range(3):
        store = SQLiteStore(tmp_path / "authshim.db")
        await store.open()
        await store.close()
    with raw(tmp_path / "authshim.db") as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (len(PACKAGED),)


async def test_processes_opening_together_migrate_once(tmp_path: Path) -> None:
    """Five stores (own connections and threads) opening a new file at once all succeed."""
    stores = [SQLiteStore(tmp_path / "authshim.db") for _ in range(5)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    with raw(tmp_path / "authshim.db") as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (len(PACKAGED),)


async def test_later_migration_is_applied_on_open(tmp_path: Path) -> None:
    """A new migration runs once on an existing file and keeps its data."""
    path = tmp_path / "authshim.db"
    first = SQLiteStore(path)
    await first.open()
    await first.set_setting("mode", "cutover")
    await first.close()
    version = PACKAGED[-1].version + 1
    extra = Migration(version, f"{version:04d}_note.sql", "ALTER TABLE users ADD COLUMN note TEXT;")
    second = SQLiteStore(path, migrations=[*PACKAGED, extra])
    await second.open()
    try:
        assert await second.get_setting("mode") == "cutover"
        await second.insert_user(NewUser(email="a@b.io", username=None, password_hash=HASH))
    finally:
        await second.close()
    with raw(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
        assert versions == [*(m.version for m in PACKAGED), version]


async def test_failing_migration_leaves_the_schema_untouched(tmp_path: Path) -> None:
    """A migration that fails half-way is rolled back whole, and open() fails."""
    broken = Migration(1, "0001_broken.sql", "CREATE TABLE a (x INTEGER);\nCREATE TABLE a (y);")
    store = SQLiteStore(tmp_path / "authshim.db", migrations=[broken])
    with pytest.raises(StoreUnavailable):
        await store.open()
    with raw(tmp_path / "authshim.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "a" not in tables
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (0,)


async def test_database_from_a_newer_authshim_is_refused(tmp_path: Path) -> None:
    """A schema version this code does not know stops open() with StoreUnavailable."""
    path = tmp_path / "authshim.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with raw(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (9999, '9999_future.sql', 0)")
    with pytest.raises(StoreUnavailable, match="9999"):
        await store.open()


def test_migration_files_load_in_version_order(tmp_path: Path) -> None:
    """load_migrations orders NNNN_name.sql files by number and ignores other files."""
    for name in ("0010_ten.sql", "0002_two.sql", "0001_one.sql", "README.md"):
        (tmp_path / name).write_text(f"-- {name}\n")
    assert [m.version for m in load_migrations(tmp_path)] == [1, 2, 10]


@pytest.mark.parametrize(
    "names",
    [["0001_a.sql", "0001_b.sql"], ["1_init.sql"], ["0001-init.sql"], ["0000_zero.sql"]],
)
def test_misnamed_or_duplicate_migrations_are_refused(tmp_path: Path, names: list[str]) -> None:
    """A .sql file that is not NNNN_name.sql, or a repeated version, is a ValueError."""
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(ValueError):
        load_migrations(tmp_path)


def test_pending_lists_what_is_not_applied() -> None:
    """pending() keeps order and skips applied versions."""
    ms = [Migration(v, f"{v:04}_m.sql", "") for v in (1, 2, 3)]
    assert [m.version for m in pending(ms, {1, 3})] == [2]
    assert pending(ms, {1, 2, 3}) == []


def test_split_statements_respects_strings_and_comments() -> None:
    """Semicolons inside strings do not split; comment-only lines vanish."""
    script = (
        "-- head\nCREATE TABLE t (x TEXT DEFAULT ';');\n\n-- mid\nINSERT INTO t VALUES ('a;b');\n"
    )
    assert list(split_statements(script)) == [
        "-- head\nCREATE TABLE t (x TEXT DEFAULT ';');",
        "-- mid\nINSERT INTO t VALUES ('a;b');",
    ]


def test_split_statements_refuses_an_unfinished_statement() -> None:
    """A script ending inside a statement is a ValueError, not a silently dropped step."""
    with pytest.raises(ValueError, match="inside a statement"):
        list(split_statements("CREATE TABLE t (x);\nCREATE TABLE u (y)\n-- tail\n"))


async def test_username_key_migration_keeps_users_and_their_reset_tokens(tmp_path: Path) -> None:
    """0012 rebuilds users with a username key and keeps every user and reset token."""
    path = tmp_path / "authshim.db"
    before = SQLiteStore(path, migrations=[m for m in PACKAGED if m.version < 12])
    await before.open()
    await before.insert_reset_token(NewResetToken(token_hash="t0", email="x@x.io", expires_at=1e12))
    await before.close()
    with raw(path) as conn:  # what the code before 0012 wrote: a lower-cased username
        conn.execute(
            "INSERT INTO users (id, email, username, password_hash, source, created_at)"
            " VALUES ('u1', 'bob@x.io', 'bob', ?, 'login', 1)",
            (HASH,),
        )
        conn.execute(
            "INSERT INTO reset_tokens (token_hash, user_id, email, created_at, expires_at)"
            " VALUES ('t1', 'u1', 'bob@x.io', 1, 1e12)"
        )
    after = SQLiteStore(path)
    await after.open()
    try:
        bob = await after.find_user("BOB")
        assert bob is not None and (bob.id, bob.username) == ("u1", "bob")
        token = await after.find_reset_token("t1")
        assert token is not None and token.user_id == bob.id
        assert await after.find_reset_token("t0") is not None
        with pytest.raises(UserExists):
            await after.insert_user(NewUser(email="b2@x.io", username="bob", password_hash=HASH))
        await after.delete_user(bob.id)  # the cascade still holds on the rebuilt table
        assert await after.find_reset_token("t1") is None
    finally:
        await after.close()
