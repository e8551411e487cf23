"""Sessions and identity: the cookie, the identity headers, forward-auth, logout, revocation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from proxy.config import Secret, SessionConfig
from proxy.sessions import SessionCodec, set_cookie
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy


async def login(proxy: Proxy) -> None:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": "alice@example.com", "password": "wonderland-1"}
    ) as response:
        assert response.status == 200


def test_a_cookie_verifies_until_it_expires_and_never_when_tampered() -> None:
    """The codec accepts its own cookies, refuses altered, foreign or expired ones."""
    codec = SessionCodec("k" * 40, max_age=60)
    value = codec.issue("user-1", 3)
    claims = codec.verify(value)
    assert claims is not None and (claims.user_id, claims.epoch) == ("user-1", 3)
    body, sig = value.split(".")
    assert codec.verify(body + "." + sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")) is None
    assert codec.verify(value.replace(".", "x.")) is None
    assert SessionCodec("o" * 40, max_age=60).verify(value) is None
    assert codec.verify(value, now=time.time() + 61) is None
    assert codec.verify("garbage") is None and codec.verify("") is None


def test_two_cookies_for_one_user_differ() -> None:
    """Each session carries 128 random bits, so no two are alike."""
    codec = SessionCodec("k" * 40, max_age=60)
    assert codec.issue("u", 0) != codec.issue("u", 0)


def test_the_cookie_attributes() -> None:
    """HttpOnly, SameSite=Lax, and Secure unless turned off."""
    config = SessionConfig(secret=Secret("k" * 40), cookie="authshim", max_age=60)
    header = set_cookie(config, "v")
    assert header == "authshim=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"


async def test_identity_headers_reach_the_upstream_with_the_original_case(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A logged-in user's requests carry X-Forwarded-User/-Email from the legacy profile."""
    await login(proxy)
    async with proxy.client.get(proxy.url("/dashboard")) as response:
        headers = (await response.json())["headers"]
    assert headers["X-Forwarded-User"] == "Alice"
    assert headers["X-Forwarded-Email"] == "Alice@Example.com"


async def test_spoofed_identity_headers_are_always_stripped(proxy: Proxy) -> None:
    """Client copies of identity headers, in any case or with _ for -, never reach the upstream."""
    spoof = {"X-Forwarded-User": "root", "x-forwarded-email": "root@x", "X-Forwarded_User": "root"}
    async with proxy.client.get(proxy.url("/dashboard"), headers=spoof) as response:
        headers = (await response.json())["headers"]
    assert not {k.lower().replace("_", "-") for k in headers} & {
        "x-forwarded-user",
        "x-forwarded-email",
    }
    await login(proxy)
    async with proxy.client.get(proxy.url("/dashboard"), headers=spoof) as response:
        headers = (await response.json())["headers"]
    names = {"x-forwarded-user", "x-forwarded-email"}
    assert [v for k, v in headers.items() if k.lower().replace("_", "-") in names] == [
        "Alice",
        "Alice@Example.com",
    ]


async def test_forward_auth_endpoint(proxy: Proxy) -> None:
    """/.authshim/session answers 401 without a session and 200 with the identity headers."""
    async with proxy.client.get(proxy.url("/.authshim/session")) as response:
        assert response.status == 401
    await login(proxy)
    async with proxy.client.get(proxy.url("/.authshim/session")) as response:
        assert response.status == 200
        assert response.headers["X-Forwarded-User"] == "Alice"
        assert response.headers["X-Authshim-User-Id"]


async def test_revoked_sessions_are_refused(proxy: Proxy) -> None:
    """Bumping a user's session epoch ends every session issued before."""
    await login(proxy)
    user = await proxy.svc.store.find_user("alice")
    assert user is not None
    await proxy.svc.store.revoke_sessions(user.id)
    proxy.svc.sessions.forget(user.id)
    async with proxy.client.get(proxy.url("/.authshim/session")) as response:
        assert response.status == 401


async def test_logout_clears_the_cookie_and_runs_the_legacy_logout(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """The logout route forwards to the legacy logout and clears authshim's cookie."""
    await login(proxy)
    assert proxy.session_cookie()
    async with proxy.client.get(proxy.url("/accounts/logout/"), allow_redirects=False) as response:
        assert response.status == 302
        cleared = [c for c in response.headers.getall("Set-Cookie") if c.startswith("authshim=")]
    assert cleared and "Max-Age=0" in cleared[0]
    assert proxy.session_cookie() is None
    assert legacy.seen[-1].path == "/accounts/logout/"
    assert legacy.seen[-1].headers["X-Forwarded-User"] == "Alice"


async def _session_status(client: aiohttp.ClientSession, proxy: Proxy, cookie: str) -> int:
    """What forward-auth answers for a bare copy of the cookie ``cookie``."""
    headers = {"Cookie": f"authshim={cookie}"}
    async with client.get(proxy.url("/.authshim/session"), headers=headers) as response:
        return response.status


async def test_a_copied_cookie_stops_working_after_logout(proxy: Proxy, legacy: FakeLegacy) -> None:
    """After logout a copy of the cookie gets no identity and forward-auth answers 401, at
    once on the replica that logged out; another session of the user keeps working."""
    await login(proxy)
    copied = proxy.session_cookie()
    assert copied
    second = await start_second_session(proxy)
    async with aiohttp.ClientSession() as thief:
        assert await _session_status(thief, proxy, copied) == 200
        async with proxy.client.get(proxy.url("/accounts/logout/"), allow_redirects=False):
            pass
        assert await _session_status(thief, proxy, copied) == 401
        async with thief.get(
            proxy.url("/private/"), headers={"Cookie": f"authshim={copied}"}
        ) as response:
            assert response.status == 200
        assert "X-Forwarded-User" not in legacy.seen[-1].headers
        assert await _session_status(thief, proxy, second) == 200


async def start_second_session(proxy: Proxy) -> str:
    """Log alice in again from another client; return that session's cookie value."""
    async with aiohttp.ClientSession() as other:
        async with other.post(
            proxy.url("/api/login"),
            json={"email": "alice@example.com", "password": "wonderland-1"},
        ) as response:
            assert response.status == 200
            return response.cookies["authshim"].value


async def test_logout_on_one_instance_ends_the_session_on_another(
    start_proxy: StartProxy, store_url: str
) -> None:
    """Two proxies on one store: after logout on the first, the second refuses the copied
    cookie (forward-auth 401) once its cached copy of the user is older than cache_ttl."""

    def fast(raw: dict[str, Any]) -> None:
        raw["session"]["cache_ttl"] = "200ms"

    first = await start_proxy(fast, store_url=store_url)
    second = await start_proxy(fast, store_url=store_url)
    await login(first)
    copied = first.session_cookie()
    assert copied
    async with aiohttp.ClientSession() as thief:
        assert await _session_status(thief, second, copied) == 200  # cached there now
        async with first.client.get(first.url("/accounts/logout/"), allow_redirects=False):
            pass
        assert await _session_status(thief, first, copied) == 401
        for _ in range(100):
            if await _session_status(thief, second, copied) == 401:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the second instance still honours the logged-out cookie")
