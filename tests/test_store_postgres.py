"""PostgreSQL-only behaviour: several replicas on one schema, the database's own uniqueness,
settings notifications, and what happens when connections are lost.

The backend-neutral behaviour is in tests/test_store_contract.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from store.base import NewUser, User
from store.errors import StoreUnavailable, UserExists
from store.postgres import PostgresStore
from store.schema import load_migrations, migrations_folder
from tests.fixtures.relay import PgRelay as _Relay
from tests.fixtures.store import PG_DSN, _drop_schema, _pg_reachable

_UNREACHABLE = _pg_reachable()
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(_UNREACHABLE is not None, reason=_UNREACHABLE or ""),
]

MakeStore = Callable[..., PostgresStore]


@pytest.fixture
def schema() -> str:
    """A schema name private to this test."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_pg(schema: str) -> AsyncIterator[MakeStore]:
    """Make unopened PostgresStores (replicas) on this test's schema; close and drop after."""
    made: list[PostgresStore] = []
    schemas: set[str] = set()

    def make(dsn: str = PG_DSN, *, schema_name: str = schema, **kw: int) -> PostgresStore:
        made.append(PostgresStore(dsn, schema=schema_name, **kw))
        schemas.add(schema_name)
        return made[-1]

    yield make
    for store in made:
        await store.close()
    for name in schemas:
        await _drop_schema(f"{PG_DSN}?schema={name}")


@pytest.fixture
async def pg() -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection, to act on the database behind the store's back."""
    conn = await asyncpg.connect(PG_DSN)
    yield conn
    await conn.close()


def _alice(username: str = "alice") -> NewUser:
    return NewUser(email="alice@example.com", username=username, password_hash="h", legacy_id="7")


async def test_concurrent_replicas_apply_migrations_once(
    make_pg: MakeStore, pg: asyncpg.Connection, schema: str
) -> None:
    """Five replicas opening one fresh schema together each record every migration once."""
    stores = [make_pg() for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    rows = await pg.fetch(f'SELECT version, name FROM "{schema}".schema_version ORDER BY 1')
    expected = [(m.version, m.name) for m in load_migrations(migrations_folder("postgresql"))]
    assert [tuple(r) for r in rows] == expected
    assert [await s.count_users() for s in stores] == [0] * 5


async def test_concurrent_inserts_through_two_pools_give_one_row(make_pg: MakeStore) -> None:
    """Twenty racing inserts of one user through two replicas store one row; the rest collide."""
    a, b = make_pg(pool_max=10), make_pg(pool_max=10)
    await asyncio.gather(a.open(), b.open())
    results = await asyncio.gather(
        *(s.insert_user(_alice(f"alice{i}")) for i in range(10) for s in (a, b)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, User) for r in results) == 1
    assert all(isinstance(r, User | UserExists) for r in results)
    assert await a.count_users() == 1


async def test_database_enforces_case_insensitive_uniqueness(
    make_pg: MakeStore, pg: asyncpg.Connection, schema: str
) -> None:
    """A raw mixed-case INSERT that bypasses the store is refused by the unique indexes (the
    username by its key, which the application folds by the store's username_case)."""
    store = make_pg()
    await store.open()
    await store.insert_user(_alice())
    insert = (
        f'INSERT INTO "{schema}".users (id, email, username, username_key, password_hash,'
        " source, created_at) VALUES ($1, $2, $3, lower($3), 'h', 'import', 0)"
    )
    with pytest.raises(asyncpg.UniqueViolationError) as email:
        await pg.execute(insert, "x1", "Alice@Example.COM", "someone")
    with pytest.raises(asyncpg.UniqueViolationError) as username:
        await pg.execute(insert, "x2", "other@example.com", "ALICE")
    assert (email.value.constraint_name, username.value.constraint_name) == (
        "users_email_key",
        "users_username_key",
    )
    with pytest.raises(UserExists) as exc:
        await store.insert_user(NewUser("ALICE@example.com", None, password_hash="h"))
    assert exc.value.field == "email"


async def test_set_setting_notifies_other_replicas_of_the_same_schema_only(
    make_pg: MakeStore,
) -> None:
    """A setting written by one replica reaches another's callback; another schema hears nothing."""
    writer, reader = make_pg(), make_pg()
    stranger = make_pg(schema_name=f"t_{uuid.uuid4().hex[:12]}")
    await asyncio.gather(writer.open(), reader.open(), stranger.open())
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    overheard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    await reader.listen_settings(lambda k, v: heard.put_nowait((k, v)))
    await stranger.listen_settings(lambda k, v: overheard.put_nowait((k, v)))
    await writer.set_setting("mode", "cutover")
    assert await asyncio.wait_for(heard.get(), 5) == ("mode", "cutover")
    await stranger.set_setting("probe", "1")  # its own notification arrives after any stray one
    assert await asyncio.wait_for(overheard.get(), 5) == ("probe", "1")


async def test_listener_reconnects_and_replays_settings(
    make_pg: MakeStore, pg: asyncpg.Connection, schema: str
) -> None:
    """After its connection is terminated the listener comes back and replays what it missed."""
    writer = make_pg()
    reader = make_pg(f"{PG_DSN}?application_name={schema}_reader", pool_min=1)
    await asyncio.gather(writer.open(), reader.open())
    heard: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    await reader.listen_settings(lambda k, v: heard.put_nowait((k, v)))
    await _terminate(pg, f"{schema}_reader")
    # Sent while the listener waits out its first reconnect delay: only the replay has it.
    await writer.set_setting("mode", "cutover")
    assert await asyncio.wait_for(heard.get(), 10) == ("mode", "cutover")
    await writer.set_setting("mode", "migrate")  # and the new LISTEN hears the next one
    assert await asyncio.wait_for(heard.get(), 5) == ("mode", "migrate")


async def test_terminated_backends_are_retried_transparently(
    make_pg: MakeStore, pg: asyncpg.Connection, schema: str
) -> None:
    """Queries right after pg_terminate_backend of every pooled connection still succeed."""
    store = make_pg(f"{PG_DSN}?application_name={schema}", pool_min=2, pool_max=2)
    await store.open()
    user = await store.insert_user(_alice())
    assert await _terminate(pg, schema) == 2
    assert await store.get_user(user.id) == user
    assert await store.set_password(user.id, "h2") == 1
    assert await _terminate(pg, schema) >= 1
    await store.incr("logins")
    assert list((await store.counters()).values()) == [1]


async def test_a_lost_connection_is_retried_once_on_a_fresh_one(
    make_pg: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A pooled connection cut as a query is sent is retried on a new connection, once."""
    async with _Relay() as relay:
        store = make_pg(relay.dsn, pool_min=1, pool_max=1)
        await store.open()
        user = await store.insert_user(_alice())
        relay.cut = ("request", b"")  # the next message the store sends
        with caplog.at_level(logging.WARNING, logger="store.postgres"):
            assert await store.get_user(user.id) == user
        assert caplog.text.count("retrying on a fresh connection") == 1
        assert relay.cuts == 1


async def test_an_insert_whose_answer_was_lost_is_not_a_duplicate(
    make_pg: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An insert that committed but lost its answer returns its user on retry, not UserExists."""
    async with _Relay() as relay:
        store = make_pg(relay.dsn, pool_min=1, pool_max=1)
        await store.open()
        # The inserted row comes back in the server's flush at Sync, after the commit.
        relay.cut = ("reply", b"alice@example.com")
        with caplog.at_level(logging.WARNING, logger="store.postgres"):
            user = await store.insert_user(_alice())
        assert "retrying on a fresh connection" in caplog.text
        assert relay.cuts == 1
        assert await store.count_users() == 1
        assert await store.get_user(user.id) == user


async def test_a_database_that_goes_away_fails_fast_and_recovers(make_pg: MakeStore) -> None:
    """While the database is unreachable calls raise StoreUnavailable at once; then they work."""
    async with _Relay() as relay:
        store = make_pg(relay.dsn, pool_min=1)
        await store.open()
        await relay.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.count_users()
        assert time.monotonic() - started < 2
        await relay.start()
        assert await store.count_users() == 0


async def test_unreachable_dsn_raises_store_unavailable_quickly(make_pg: MakeStore) -> None:
    """Nothing listens on port 1: open() and listen_settings() fail fast with StoreUnavailable."""
    store = make_pg("postgresql://postgres@127.0.0.1:1/test")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.open()
    with pytest.raises(StoreUnavailable):
        await store.listen_settings(lambda k, v: None)
    with pytest.raises(StoreUnavailable):
        await store.get_setting("mode")
    assert time.monotonic() - started < 2


async def test_a_closed_store_raises_store_unavailable(make_pg: MakeStore) -> None:
    """Calls after close() raise StoreUnavailable, not an asyncpg error."""
    store = make_pg()
    await store.open()
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.count_users()


async def _terminate(pg: asyncpg.Connection, application_name: str) -> int:
    """Terminate every backend connected with ``application_name``; return how many."""
    sql = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1"
    )
    return int(await pg.fetchval(sql, application_name))
