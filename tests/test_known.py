"""Who has migrated, per process: the Bloom filter, its loader, logins with the store down."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any, cast

from proxy.known import KnownIdentifiers, KnownLoader
from store.base import NewUser, Store
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy
from tests.test_store_contract import HASH


def _fp_rate(known: KnownIdentifiers, probes: int = 20_000) -> float:
    return sum(f"stranger{i}@other.org" in known for i in range(probes)) / probes


def test_filter_has_no_false_negatives_and_about_one_percent_false_positives() -> None:
    """Every added identifier is found; strangers are wrongly found about 1% of the time."""
    known = KnownIdentifiers(capacity=20_000)
    names = [f"user{i}@example.com" for i in range(20_000)]
    for name in names:
        known.add(name)
    assert all(name in known for name in names)
    assert _fp_rate(known) < 0.015
    assert 20_000 * 9 // 8 <= known.nbytes <= 20_000 * 10 // 8  # ~9.6 bits an identifier


def test_filter_grows_in_layers_past_its_capacity() -> None:
    """Ten times more identifiers than reserved are all found, at a still small error rate."""
    known = KnownIdentifiers(capacity=1_000)
    names = [f"u{i}" for i in range(10_000)]
    for name in names:
        known.add(name)
    assert all(name in known for name in names)
    assert known.count == 10_000
    assert _fp_rate(known) < 0.025  # each full layer adds its rate: under twice 1%


def test_only_a_loaded_filter_may_say_surely_not() -> None:
    """Before its first load the filter says anyone may have migrated; after, it normalises."""
    known = KnownIdentifiers()
    known.add("alice@example.com")
    assert known.may_have_migrated("nobody@example.com")
    known.ready = True
    assert not known.may_have_migrated("nobody@example.com")
    assert known.may_have_migrated(" Alice@Example.COM")


async def test_loader_loads_then_picks_up_users_stored_elsewhere(store: Store) -> None:
    """A load finds every stored user; a catch-up finds those another replica stored since."""
    for i in range(5):
        await store.insert_user(NewUser(f"u{i}@x.io", f"user{i}", HASH))
    known = KnownIdentifiers()
    loader = KnownLoader(store, known, interval=0.05)
    await loader.load()
    assert known.ready and known.count == 10
    assert all(known.may_have_migrated(f"USER{i}") for i in range(5))
    assert not known.may_have_migrated("late@x.io")
    await store.insert_user(NewUser("late@x.io", None, HASH))
    assert await loader.catch_up() == 1
    assert known.may_have_migrated("late@x.io")
    assert await loader.catch_up() == 0  # the overlap is read again, not counted again
    assert known.count == 11


async def test_a_row_committed_late_with_an_older_time_is_still_found(store: Store) -> None:
    """A user whose creation time is older than the newest read (a slow commit) is picked up."""
    first = await store.insert_user(NewUser("first@x.io", None, HASH))
    known = KnownIdentifiers()
    loader = KnownLoader(store, known, interval=0.05)
    await loader.load()
    late = await store.insert_user(NewUser("late@x.io", "late", HASH))
    await store.delete_user(late.id)
    # Stored with a time before the newest row already read, as a slow commit would be.
    await store.upsert_users([dataclasses.replace(late, created_at=first.created_at - 10)])
    assert await loader.catch_up() == 1
    assert known.may_have_migrated("late@x.io") and known.may_have_migrated("LATE")
    assert known.count == 3


class RowCounting:
    """The store, counting the rows the loader reads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def identifiers_after(self, after: tuple[float, str], limit: int) -> list[Any]:
        found = await self._store.identifiers_after(after, limit)
        self.rows += len(found)
        return found


async def test_users_imported_long_ago_are_not_read_again_at_each_catch_up(store: Store) -> None:
    """An import stamped a day ago is read once at load, then only new users are read."""
    day_ago = time.time() - 86400
    users = [await store.insert_user(NewUser(f"u{i}@x.io", None, HASH)) for i in range(50)]
    await store.upsert_users([dataclasses.replace(u, created_at=day_ago) for u in users])
    counting = RowCounting(store)
    loader = KnownLoader(cast(Store, counting), KnownIdentifiers(), interval=0.05)
    await loader.load()
    assert counting.rows == 50
    assert await loader.catch_up() == 0 and counting.rows == 50
    await store.insert_user(NewUser("new@x.io", None, HASH))
    assert await loader.catch_up() == 1 and counting.rows == 51


def test_a_reserve_after_early_captures_keeps_them() -> None:
    """Identifiers added before the load sized the filter are still found after it."""
    known = KnownIdentifiers(capacity=10)
    known.add("early@x.io")
    known.reserve(100_000)
    for i in range(50_000):
        known.add(f"u{i}")
    assert "early@x.io" in known and "u49999" in known
    assert _fp_rate(known) < 0.015


async def _json_login(proxy: Proxy, email: str, password: str) -> tuple[int, dict[str, Any]]:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}
    ) as response:
        body = await response.read()
        return response.status, dict(response.headers) | {"body": json.loads(body or b"{}")}


async def _until_loaded(proxy: Proxy) -> None:
    for _ in range(100):
        if proxy.svc.known.ready:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the known-identifiers filter never loaded")


async def test_store_down_migrated_get_503_unmigrated_are_forwarded(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """With the store down a migrated user gets 503 + Retry-After; others reach the legacy app."""
    assert (await _json_login(proxy, "bob@example.com", "builder-22"))[0] == 200  # captured
    await _until_loaded(proxy)
    store = proxy.svc.store
    await store.close()
    try:
        status, seen = await _json_login(proxy, "BOB@example.com", "builder-22")
        assert status == 503 and seen["Retry-After"] == "1"
        status, seen = await _json_login(proxy, "carol@example.com", "singer-333")
        assert status == 200 and seen["body"]["token"] == "t-carol"  # the legacy app's answer
        assert [json.loads(s.body)["email"] for s in legacy.logins()] == [
            "bob@example.com",
            "carol@example.com",
        ]
    finally:
        await store.open()
    assert await store.find_user("carol") is None  # nothing was captured meanwhile
    assert (await _json_login(proxy, "bob@example.com", "builder-22"))[0] == 200
    assert (await _json_login(proxy, "carol@example.com", "singer-333"))[0] == 200
    assert await store.find_user("carol") is not None
    assert len(legacy.logins()) == 3  # bob's local login did not reach it


async def test_health_answers_200_and_says_whether_the_store_answers(proxy: Proxy) -> None:
    """GET /.authshim/health is 200 with the store ok, and still 200 (store down) without it."""
    async with proxy.client.get(proxy.url("/.authshim/health")) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok", "store": "ok", "mode": "migrate"}
    await proxy.svc.store.close()
    try:
        async with proxy.client.get(proxy.url("/.authshim/health")) as response:
            assert response.status == 200
            assert (await response.json())["store"] == "unavailable"
    finally:
        await proxy.svc.store.open()
