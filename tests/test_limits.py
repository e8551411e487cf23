"""Brute-force protection and rate limits, attacked the way an attacker would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.config import LimitsConfig
from proxy.errors import Throttled
from proxy.limits import Limiter, address_group
from store.base import Store
from store.passwords import HashParams, PasswordPool
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy

SECRET = "x" * 32


async def login(
    proxy: Proxy, email: str, password: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}, headers=headers
    ) as response:
        await response.read()
        return response.status, dict(response.headers)


class CountingPool(PasswordPool):
    """A real argon2 pool that counts verifications, to show when none happened."""

    verifies = 0

    async def verify(self, phc: str, password: str) -> None:
        CountingPool.verifies += 1
        await super().verify(phc, password)


async def test_a_migrated_account_is_blocked_after_ten_failures_before_any_argon2(
    start_proxy: StartProxy,
) -> None:
    """Ten wrong passwords, then 429 with Retry-After even for the right one, with no verify."""
    proxy = await start_proxy()
    assert (await login(proxy, "bob@example.com", "builder-22"))[0] == 200  # captured
    await proxy.settled()  # the success took its attempt back
    for _ in range(10):
        assert (await login(proxy, "bob@example.com", "wrong"))[0] == 401
    status, headers = await login(proxy, "bob@example.com", "builder-22")
    assert status == 429 and int(headers["Retry-After"]) >= 1


async def form_login(proxy: Proxy, username: str, password: str) -> int:
    async with proxy.client.post(
        proxy.url("/accounts/login/"),
        data={"username": username, "password": password},
        allow_redirects=False,
    ) as response:
        await response.read()
        return response.status


async def test_a_stored_users_email_and_username_share_one_count(start_proxy: StartProxy) -> None:
    """Five wrong passwords by email and five by username block the user: one count, not two."""
    proxy = await start_proxy()
    assert (await login(proxy, "bob@example.com", "builder-22"))[0] == 200  # captured
    await proxy.settled()
    for _ in range(5):
        assert (await login(proxy, "bob@example.com", "wrong"))[0] == 401
        assert await form_login(proxy, "BOB", "wrong") == 302  # the configured failure answer
    assert await form_login(proxy, "bob", "builder-22") == 429
    assert (await login(proxy, "bob@example.com", "builder-22"))[0] == 429


async def test_throttled_logins_do_no_password_work(start_proxy: StartProxy) -> None:
    """Once blocked, further attempts never reach argon2."""
    pool = CountingPool(HashParams(time_cost=1, memory_cost=64), workers=1)
    proxy = await start_proxy()
    await proxy.server.close()
    from aiohttp.test_utils import TestServer

    from proxy.app import create_app

    server = TestServer(create_app(proxy.svc.config, passwords=pool), host="127.0.0.1")
    await server.start_server()
    try:
        other = Proxy(server, proxy.client)
        await login(other, "bob@example.com", "builder-22")  # capture (a hash, no verify)
        for _ in range(10):
            await login(other, "bob@example.com", "wrong")
        before = CountingPool.verifies
        for _ in range(5):
            assert (await login(other, "bob@example.com", "wrong"))[0] == 429
        assert CountingPool.verifies == before
    finally:
        await server.close()
        pool.close()


async def test_a_parallel_burst_reaches_the_legacy_app_at_most_the_threshold(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """Forty parallel guesses on an unmigrated user: the legacy app sees exactly ten."""
    results = await asyncio.gather(
        *(login(proxy, "alice@example.com", f"guess-{i}") for i in range(40))
    )
    assert sorted({status for status, _ in results}) == [401, 429]
    assert len(legacy.logins()) == 10


async def test_a_success_clears_the_account_count(proxy: Proxy, legacy: FakeLegacy) -> None:
    """Nine failures, a success, then nine more failures are all still answered."""
    for _ in range(9):
        await login(proxy, "carol@example.com", "wrong")
    assert (await login(proxy, "carol@example.com", "singer-333"))[0] == 200
    await proxy.settled()  # a tenth of a second later on its own (proxy/writebehind.py)
    statuses = [(await login(proxy, "carol@example.com", "wrong"))[0] for _ in range(9)]
    assert statuses == [401] * 9


async def test_another_address_is_not_blocked_and_forged_xff_does_not_help(
    start_proxy: StartProxy,
) -> None:
    """Behind a trusted proxy each client address has its own count; a client's own
    X-Forwarded-For is ignored when it connects directly."""
    direct = await start_proxy()
    for i in range(10):
        await login(direct, "bob@example.com", "wrong", {"X-Forwarded-For": f"10.0.0.{i}"})
    assert (await login(direct, "bob@example.com", "wrong", {"X-Forwarded-For": "10.9.9.9"}))[
        0
    ] == 429

    behind = await start_proxy(lambda raw: raw["server"].update(trusted_proxies=["127.0.0.1"]))
    a, b = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    for _ in range(10):
        await login(behind, "carol@example.com", "wrong", a)
    assert (await login(behind, "carol@example.com", "wrong", a))[0] == 429
    assert (await login(behind, "carol@example.com", "singer-333", b))[0] == 200


async def test_an_address_failing_across_many_accounts_is_slowed(start_proxy: StartProxy) -> None:
    """Password spraying: one address, a new account each time, is stopped by login_ip."""
    proxy = await start_proxy(lambda raw: raw.update(limits={"login_ip": 5}))
    statuses = [(await login(proxy, f"user{i}@example.com", "Winter2024!"))[0] for i in range(7)]
    assert statuses == [401] * 5 + [429] * 2


async def test_unknown_and_existing_accounts_are_throttled_alike(proxy: Proxy) -> None:
    """The 429 for an account that does not exist is the same as for one that does."""
    await login(proxy, "bob@example.com", "builder-22")
    answers = []
    for email in ("bob@example.com", "ghost@example.com"):
        for _ in range(10):
            await login(proxy, email, "wrong")
        async with proxy.client.post(
            proxy.url("/api/login"), json={"email": email, "password": "wrong"}
        ) as response:
            answers.append((response.status, await response.read(), response.content_type))
    assert answers[0] == answers[1]


async def test_unreadable_bodies_cannot_get_around_the_limit(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """Broken bodies that may name a credential are refused; ones that cannot are still
    forwarded, but counted: at most ten get through."""
    for i in range(5):
        async with proxy.client.post(
            proxy.url("/api/login"),
            data=b'{"email": "alice@example.com", "password": "g' + str(i).encode() + b"\xff",
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 400
    assert legacy.logins() == []
    statuses = []
    for i in range(15):
        async with proxy.client.post(
            proxy.url("/api/login"), data=b"[" + str(i).encode(),
            headers={"Content-Type": "application/json"},
        ) as response:  # fmt: skip
            statuses.append(response.status)
    assert len(legacy.logins()) == 10 and statuses[10:] == [429] * 5


async def test_a_repeated_credential_is_refused_and_never_forwarded(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """username twice (a parser differential with the legacy app) gets 400, in JSON too."""
    async with proxy.client.post(
        proxy.url("/accounts/login/"),
        data=b"username=ghost&password=x&username=bob&password=builder-22",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        assert response.status == 400
    async with proxy.client.post(
        proxy.url("/api/login"),
        data=b'{"email": "ghost@x.io", "password": "x", "email": "bob@example.com"}',
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
    assert legacy.logins() == []


async def test_the_limit_counts_in_the_store_so_replicas_share_it(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """Two authshim processes on one store: five failures on each make ten, and both block."""
    first, second = await start_proxy(), await start_proxy()
    for _ in range(5):
        await login(first, "alice@example.com", "wrong")
        await login(second, "alice@example.com", "wrong")
    assert (await login(first, "alice@example.com", "wrong"))[0] == 429
    assert (await login(second, "alice@example.com", "wonderland-1"))[0] == 429
    assert len(legacy.logins()) == 10


async def test_login_with_the_store_down_fails_closed_for_migrated_users(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """When attempts cannot be counted, a migrated user's login gets 503, never forwarded."""
    await login(proxy, "bob@example.com", "builder-22")
    await proxy.svc.store.close()
    status, headers = await login(proxy, "bob@example.com", "builder-22")
    assert status == 503 and headers["Retry-After"] == "1"
    assert len(legacy.logins()) == 1


async def test_with_the_store_down_guesses_are_still_limited_in_process(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """Store down: unmigrated users still reach the legacy app, but at most ten guesses each."""
    for _ in range(100):
        if proxy.svc.known.ready:
            break
        await asyncio.sleep(0.02)
    await proxy.svc.store.close()
    try:
        statuses = [(await login(proxy, "alice@example.com", f"guess-{i}"))[0] for i in range(15)]
        assert statuses == [401] * 10 + [429] * 5
        assert len(legacy.logins()) == 10
        assert (await login(proxy, "carol@example.com", "singer-333"))[0] == 200  # still served
    finally:
        await proxy.svc.store.open()


# -- the limiter itself, with a clock ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_back_off_grows_and_is_never_permanent(store: Store) -> None:
    """Blocks double up to the cap; after each, one more attempt is allowed."""
    clock = Clock()
    config = LimitsConfig(login_account_ip=3, login_block=60.0, login_block_max=240.0)
    limiter = Limiter(store, config, SECRET, clock=clock)
    for _ in range(3):
        await limiter.login_attempt("bob", "192.0.2.1")
    waits = []
    for _ in range(5):
        with pytest.raises(Throttled) as caught:
            await limiter.login_attempt("bob", "192.0.2.1")
        waits.append(round(caught.value.retry_after))
        clock.now += caught.value.retry_after
        await limiter.login_attempt("bob", "192.0.2.1")  # allowed once the block ends
    assert waits == [60, 120, 240, 240, 240]


async def test_an_admin_unblock_or_a_reset_clears_every_address(store: Store) -> None:
    """clear_user lifts the blocks of the user's email and username from every address."""
    limiter = Limiter(store, LimitsConfig(login_account_ip=2), SECRET, clock=Clock())
    for ip in ("192.0.2.1", "2001:db8::1"):
        for name in ("bob", "bob@x.io"):
            for _ in range(2):
                await limiter.login_attempt(name, ip)
            with pytest.raises(Throttled):
                await limiter.login_attempt(name, ip)
    await limiter.clear_user(["Bob", "BOB@x.io", None])
    for ip in ("192.0.2.1", "2001:db8::1"):
        for name in ("bob", "bob@x.io"):
            await limiter.login_attempt(name, ip)


async def test_reset_and_signup_rate_limits(store: Store) -> None:
    """Five resets per address and twenty per client address; sign-ups are counted apart."""
    limiter = Limiter(store, LimitsConfig(), SECRET, clock=Clock())
    for _ in range(5):
        await limiter.check("reset", ip="192.0.2.1", address="bob@x.io")
    with pytest.raises(Throttled):
        await limiter.check("reset", ip="192.0.2.9", address="BOB@x.io")  # any address
    await limiter.check("signup", ip="192.0.2.1", address="bob@x.io")
    for i in range(15):  # 5 + 15 = the twenty this client address may send
        await limiter.check("reset", ip="192.0.2.1", address=f"u{i}@x.io")
    with pytest.raises(Throttled):
        await limiter.check("reset", ip="192.0.2.1", address="new@x.io")
    with pytest.raises(ValueError):
        await limiter.check("login", ip="192.0.2.1")


async def test_counters_hold_no_identifier_or_address_in_clear(store: Store) -> None:
    """What the limits table stores are keyed hashes: no email, username or address."""
    limiter = Limiter(store, LimitsConfig(), SECRET, clock=Clock())
    await limiter.login_attempt("hunter2-typed-as-username@x.io", "203.0.113.7")
    rows: Any
    if hasattr(store, "_fetch"):
        rows = await store._fetch("SELECT * FROM limits", ())
    else:
        rows = await store._run(lambda c: c.fetch("SELECT * FROM limits"))
    text = repr([tuple(r) for r in rows])
    assert "hunter2" not in text and "203.0.113" not in text and len(rows) == 2


def test_ipv6_clients_are_limited_per_64() -> None:
    """All addresses of one /64 share a count; IPv4-mapped addresses count as IPv4."""
    assert address_group("2001:db8:1:2::1") == address_group("2001:db8:1:2:ffff::9")
    assert address_group("2001:db8:1:3::1") != address_group("2001:db8:1:2::1")
    assert address_group("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_group("not-an-ip") == "not-an-ip"
