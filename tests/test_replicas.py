"""Two real ``authshim serve`` processes on one PostgreSQL schema, behind no balancer at all:
the test is the balancer, sending each request to the replica it wants.

The processes reach PostgreSQL through a TCP relay (tests/fixtures/relay.py), so that the
database can be cut and restored under them without stopping the shared server.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from store.base import Store, User
from store.factory import create_store
from tests.accounts import accounts, token_of, wait_for_mail
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.relay import PgRelay
from tests.fixtures.replicas import Cluster, Replica
from tests.fixtures.store import PG_DSN, _drop_schema, _pg_reachable

_UNREACHABLE = _pg_reachable()
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(_UNREACHABLE is not None, reason=_UNREACHABLE or ""),
]


@dataclass
class Env:
    """The cluster, the relay in front of its database, and a direct store to check with."""

    cluster: Cluster
    relay: PgRelay
    store: Store
    store_url: str  # straight to PostgreSQL, not through the relay
    legacy: FakeLegacy
    client: aiohttp.ClientSession


@pytest.fixture
async def env(legacy: FakeLegacy, legacy_server: TestServer, tmp_path: Path) -> AsyncIterator[Env]:
    """A relay to PostgreSQL, a private schema, a direct store on it; replicas started by tests."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    relay = PgRelay()
    await relay.start()
    upstream = str(legacy_server.make_url("")).rstrip("/")
    cluster = Cluster(upstream, f"{relay.dsn}&schema={schema}", tmp_path)
    store_url = f"{PG_DSN}?schema={schema}"
    store = create_store(store_url)
    await store.open()
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        yield Env(cluster, relay, store, store_url, legacy, client)
    finally:
        await client.close()
        await cluster.stop()
        await relay.stop()
        await store.close()
        await _drop_schema(f"{PG_DSN}?schema={schema}")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def from_legacy(self) -> bool:
        """The legacy app's login answer carries a token; authshim's own does not."""
        return isinstance(self.body, dict) and "token" in self.body


async def login(client: aiohttp.ClientSession, replica: Replica, email: str, pw: str) -> Answer:
    async with client.post(
        replica.url("/api/login"), json={"email": email, "password": pw}
    ) as response:
        body = await response.json(content_type=None) if await response.read() else None
        return Answer(response.status, dict(response.headers), body)


def add_users(legacy: FakeLegacy, prefix: str, n: int, first_id: int) -> list[tuple[str, str]]:
    """Add ``n`` legacy users; return their (email, password)."""
    users = []
    for i in range(n):
        email = f"{prefix}{i}@example.com"
        legacy.add_user(first_id + i, f"{prefix}{i}", email, f"pw-{prefix}-{i}-secret")
        users.append((email, f"pw-{prefix}-{i}-secret"))
    return users


async def until(check: Any, within: float, step: float = 0.05) -> float:
    """Wait until ``await check()`` is true; return how long it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s")
        await asyncio.sleep(step)
    return time.monotonic() - started


async def stored(store: Store, email: str) -> User:
    user = await store.find_user(email)
    assert user is not None, email
    return user


async def test_concurrent_first_logins_through_both_replicas_store_one_record_each(
    env: Env,
) -> None:
    """Racing first logins of the same users through both replicas store one record each."""
    a, b = await env.cluster.start()
    users = add_users(env.legacy, "race", 8, 100)
    env.legacy.login_delay = 0.2  # both replicas are inside the legacy exchange together
    answers = await asyncio.gather(
        *(login(env.client, r, e, p) for e, p in users for r in (a, b, a, b))
    )
    assert [x.status for x in answers] == [200] * 32
    assert await env.store.count_users() == 8
    for email, _ in users:
        user = await stored(env.store, email)
        assert user.password_hash.startswith("$argon2id$") and user.profile["email"] == email
    legacy_logins = len(env.legacy.logins())
    again = await asyncio.gather(*(login(env.client, r, e, p) for e, p in users for r in (a, b)))
    assert all(x.status == 200 and not x.from_legacy for x in again)
    assert len(env.legacy.logins()) == legacy_logins


async def test_a_mode_switch_reaches_the_other_replica_at_once(env: Env) -> None:
    """`authshim mode cutover --store URL` is seen by both replicas in well under their poll."""
    a, b = await env.cluster.start(change=lambda raw: raw["migration"].update(mode_poll="60s"))
    for mode in ("cutover", "migrate"):
        switch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.cli", "mode", mode, "--store", env.store_url,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert (await switch.communicate())[0].decode().strip() == mode

        async def switched(mode: str = mode) -> bool:
            healths = [await r.health(env.client) for r in (a, b)]
            return all(h["mode"] == mode for h in healths)

        assert await until(switched, within=5) < 5  # the poll alone would take up to 60 s
        if mode == "cutover":
            refused = await login(env.client, b, "alice@example.com", "wonderland-1")
            assert (refused.status, refused.body) == (401, {"error": "invalid credentials"})
            assert env.legacy.logins() == []


async def test_a_session_from_one_replica_works_on_the_other_until_revoked(env: Env) -> None:
    """A session issued by one replica is honoured by the other; a revocation ends it on both."""
    a, b = await env.cluster.start()
    assert (await login(env.client, a, "alice@example.com", "wonderland-1")).status == 200
    assert (await login(env.client, a, "alice@example.com", "wonderland-1")).status == 200
    cookie = env.client.cookie_jar.filter_cookies(URL(a.url("/")))["authshim"].value
    browser = {"Cookie": f"authshim={cookie}"}
    async with aiohttp.ClientSession() as other:  # no cookie jar of its own: only this cookie
        async with other.get(b.url("/.authshim/session"), headers=browser) as response:
            assert response.status == 200 and response.headers["X-Forwarded-User"] == "Alice"
        async with other.get(b.url("/private/page"), headers=browser) as response:
            seen = (await response.json())["headers"]
            assert seen["X-Forwarded-Email"] == "Alice@Example.com"

        await env.store.revoke_sessions((await stored(env.store, "alice")).id)

        async def refused() -> bool:
            statuses = []
            for replica in (a, b):
                url = replica.url("/.authshim/session")
                async with other.get(url, headers=browser) as response:
                    statuses.append(response.status)
            return statuses == [401, 401]

        assert await until(refused, within=5) <= 1.0 + 1.0  # session.cache_ttl = 1s


async def test_a_logout_on_one_replica_ends_a_copied_cookie_on_both(env: Env) -> None:
    """After a logout through one replica, a copy of that session's cookie gets 401 from
    forward-auth and no identity on both, within session.cache_ttl (1 s)."""
    a, b = await env.cluster.start()
    assert (await login(env.client, a, "alice@example.com", "wonderland-1")).status == 200
    cookie = env.client.cookie_jar.filter_cookies(URL(a.url("/")))["authshim"].value
    browser = {"Cookie": f"authshim={cookie}"}
    async with aiohttp.ClientSession() as thief:  # no cookie jar of its own: only this copy
        async with thief.get(b.url("/.authshim/session"), headers=browser) as response:
            assert response.status == 200  # b has alice cached now
        async with env.client.get(a.url("/accounts/logout/"), allow_redirects=False) as response:
            assert response.status == 302

        async def refused() -> bool:
            statuses = []
            for replica in (a, b):
                async with thief.get(replica.url("/.authshim/session"), headers=browser) as r:
                    statuses.append(r.status)
            return statuses == [401, 401]

        await until(refused, within=5)  # session.cache_ttl = 1s; 5 s only bounds a failure
        async with thief.get(b.url("/private/page"), headers=browser) as response:
            assert "X-Forwarded-User" not in (await response.json())["headers"]


async def test_database_cut_and_restored_under_traffic(env: Env) -> None:
    """Cut: migrated users get 503, others reach the legacy app; restored: all works, no debris."""
    a, b = await env.cluster.start()
    migrated = add_users(env.legacy, "mig", 3, 200)
    traffic = add_users(env.legacy, "traf", 3, 300)
    untouched = add_users(env.legacy, "new", 2, 400)
    everyone = migrated + traffic + untouched
    for i, (email, pw) in enumerate(migrated):  # captured by one replica or the other
        assert (await login(env.client, (a, b)[i % 2], email, pw)).status == 200
    await asyncio.sleep(1.0)  # > 3 polls: each replica knows whom the other captured

    phase = "up"
    seen: list[tuple[str, str, int, bool]] = []  # (phase, email, status, answered by legacy)
    stop = asyncio.Event()

    async def traffic_loop(replica: Replica) -> None:
        while not stop.is_set():
            for email, pw in migrated + traffic:
                before = phase
                answer = await login(env.client, replica, email, pw)
                if phase == before:  # not straddling a cut or a restore
                    seen.append((phase, email, answer.status, answer.from_legacy))
            await asyncio.sleep(0.02)

    loops = [asyncio.create_task(traffic_loop(r)) for r in (a, b)]
    try:
        await asyncio.sleep(1.0)  # the traffic users are captured, and known to both replicas
        phase = "cutting"
        await env.relay.stop()
        phase = "down"
        for replica in (a, b):
            for email, pw in migrated:
                answer = await login(env.client, replica, email, pw)
                assert (answer.status, answer.headers.get("Retry-After")) == (503, "1"), email
            for email, pw in untouched:
                answer = await login(env.client, replica, email, pw)
                assert answer.status == 200 and answer.from_legacy, email
            assert (await replica.health(env.client))["store"] == "unavailable"
        await asyncio.sleep(1.0)
        phase = "restoring"
        await env.relay.start()

        async def healthy() -> bool:
            return all([(await r.health(env.client))["store"] == "ok" for r in (a, b)])

        await until(healthy, within=10)
        phase = "restored"
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*loops)

    assert {s for _, _, s, _ in seen} <= {200, 503}
    down = [(e, s, legacy) for p, e, s, legacy in seen if p == "down"]
    assert down and {s for _, s, _ in down} == {503}, down  # all of them migrated by then
    assert {s for p, _, s, _ in seen if p == "restored"} == {200}
    assert len([e for e, _ in untouched if await env.store.find_user(e)]) == 0  # never captured

    for email, pw in everyone:  # first logins capture; then every user answers locally on both
        await login(env.client, a, email, pw)
        for replica in (a, b):
            answer = await login(env.client, replica, email, pw)
            assert answer.status == 200 and not answer.from_legacy, email
    assert await env.store.count_users() == len(everyone)
    for email, _ in everyone:  # no half-written rows: every one complete
        user = await stored(env.store, email)
        assert user.password_hash.startswith("$argon2id$") and user.legacy_id
        assert user.profile == env.legacy.find(email)


async def form(replica: Replica, path: str, data: dict[str, str]) -> tuple[int, str, str]:
    """POST a form to ``replica`` as a same-site browser would (cookie-less)."""
    headers = {"Origin": replica.url("")}
    async with aiohttp.ClientSession() as client:
        async with client.post(
            replica.url(path), data=data, headers=headers, allow_redirects=False
        ) as response:
            return response.status, response.headers.get("Location", ""), await response.text()


async def test_a_reset_token_spent_on_one_replica_is_refused_by_the_other(
    env: Env, tmp_path: Path
) -> None:
    """A reset token used through one replica is refused by the other (tokens are shared)."""
    outbox = tmp_path / "outbox"
    a, b = await env.cluster.start(change=accounts(outbox, lookup=False))
    assert (await login(env.client, a, "bob@example.com", "builder-22")).status == 200
    asked = await form(a, "/accounts/password_reset/", {"email": "bob@example.com"})
    assert asked[:2] == (302, "/accounts/password_reset/done/")
    token = token_of((await wait_for_mail(outbox))[0])
    new = {"token": token, "password": "first-new-pass", "password2": "first-new-pass"}
    assert (await form(b, "/.authshim/reset", new))[:2] == (302, "/accounts/login/")
    again = {"token": token, "password": "other-new-pass", "password2": "other-new-pass"}
    status, _, page = await form(a, "/.authshim/reset", again)
    assert status == 400 and "invalid or has expired" in page
    assert (await login(env.client, a, "bob@example.com", "first-new-pass")).status == 200
    assert (await login(env.client, b, "bob@example.com", "builder-22")).status == 401
