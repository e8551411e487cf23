"""Bookkeeping written behind the answers: batched, kept while the store fails, never lost
at shutdown, and a login's count and counters land on their own within moments."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.writebehind import WriteBehind
from store.errors import StoreUnavailable
from tests.fixtures.proxy import Proxy, StartProxy, make_config


class Recorder:
    """A write function that records its batches, and fails while ``down``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.down = False

    async def write(self, batch: list[int]) -> None:
        if self.down:
            raise StoreUnavailable("store down")
        self.batches.append(batch)


async def test_items_added_together_are_written_in_one_batch() -> None:
    """Five items added within the interval reach the store in one call, in order."""
    rec = Recorder()
    behind = WriteBehind("t", rec.write, interval=0.05)
    task = asyncio.create_task(behind.run())
    try:
        for i in range(5):
            behind.add(i)
        await asyncio.sleep(0.2)
        assert rec.batches == [[0, 1, 2, 3, 4]]
        behind.add(5)
        await asyncio.sleep(0.2)
        assert rec.batches == [[0, 1, 2, 3, 4], [5]]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_failed_batch_is_kept_and_written_when_the_store_is_back() -> None:
    """Nothing is lost while the store is down: the next flush writes old and new, in order."""
    rec = Recorder()
    behind = WriteBehind("t", rec.write, interval=0.01)
    rec.down = True
    behind.add(1)
    await behind.flush()
    behind.add(2)
    assert len(behind) == 2
    rec.down = False
    await behind.flush()
    assert rec.batches == [[1, 2]] and len(behind) == 0


async def test_past_the_limit_the_oldest_items_go() -> None:
    """A store down for long costs the oldest bookkeeping, not memory without end."""
    rec = Recorder()
    behind = WriteBehind("t", rec.write, limit=3)
    rec.down = True
    for i in range(2):
        behind.add(i)
    await behind.flush()
    for i in range(2, 5):
        behind.add(i)
    rec.down = False
    await behind.flush()
    assert rec.batches == [[2, 3, 4]]


async def test_cancelling_run_writes_what_is_left() -> None:
    """At shutdown the pending items are written once more, without waiting the interval."""
    rec = Recorder()
    behind = WriteBehind("t", rec.write, interval=60)
    task = asyncio.create_task(behind.run())
    behind.add(7)
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert rec.batches == [[7]]


async def login(proxy: Proxy, email: str, password: str) -> int:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}
    ) as response:
        await response.read()
        return response.status


async def test_a_local_login_is_counted_within_moments_on_its_own(start_proxy: StartProxy) -> None:
    """No flush from outside: the count and the last login time land by themselves."""
    proxy = await start_proxy()
    assert await login(proxy, "bob@example.com", "builder-22") == 200  # captured
    started = time.time()
    assert await login(proxy, "bob@example.com", "builder-22") == 200  # answered locally
    deadline = time.monotonic() + 5
    while True:
        user = await proxy.svc.store.find_user("bob@example.com")
        assert user is not None
        if user.login_count == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert user.login_count == 1
    assert user.last_login_at is not None and user.last_login_at >= started - 1


async def test_a_success_gives_its_attempts_back_within_moments(
    start_proxy: StartProxy, sqlite_url: str
) -> None:
    """After a wrong and a right password, by itself: the account's counter is gone and the
    address's counts the wrong one only."""
    proxy = await start_proxy()
    assert await login(proxy, "bob@example.com", "wrong") == 401
    assert await login(proxy, "bob@example.com", "builder-22") == 200
    deadline = time.monotonic() + 5
    while True:
        with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
            counts = conn.execute("SELECT count FROM limits").fetchall()
        if counts == [(1,)] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert counts == [(1,)]


async def test_shutdown_writes_the_last_logins_counts(
    tmp_path: Path, legacy_server: TestServer
) -> None:
    """A login answered just before the process stops is still counted in the store."""
    db = tmp_path / "a.db"
    config = make_config(str(legacy_server.make_url("")).rstrip("/"), f"sqlite:///{db}")
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as client:
        for _ in range(2):  # captured, then answered locally
            async with client.post(
                server.make_url("/api/login"),
                json={"email": "bob@example.com", "password": "builder-22"},
            ) as response:
                assert response.status == 200
    await server.close()  # at once: well within the interval
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT login_count FROM users").fetchall() == [(1,)]


async def test_while_the_store_fails_tries_come_less_often() -> None:
    """A store that is down is not asked ten times a second (nor the log written as often)."""
    rec = Recorder()
    rec.down = True
    tries = 0
    real = rec.write

    async def counting(batch: list[int]) -> None:
        nonlocal tries
        tries += 1
        await real(batch)

    behind = WriteBehind("t", counting, interval=0.01)
    task = asyncio.create_task(behind.run())
    try:
        behind.add(1)
        await asyncio.sleep(1.5)
        assert 1 <= tries <= 3  # at 0.01 s, then 1 s later: not 150 times
        rec.down = False
        await asyncio.sleep(2.5)  # the next try, at most 2 s after the last, writes it
        assert rec.batches == [[1]] and len(behind) == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
