"""A wiki behind two front controllers (``/index.php?title=...``, ``/api.php`` with an
``action``): routes by method, path and condition, in migrate mode and in cut-over."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.modes import write_mode
from tests.fixtures.proxy import Proxy, make_config
from tests.fixtures.wiki import Wiki

LOGIN_FORM = "/index.php?title=Special:UserLogin"


def wiki_config(upstream: str, raw: dict[str, Any]) -> None:
    raw["login"] = [
        {
            "path": "/index.php", "format": "form", "when": {"title": "Special:UserLogin"},
            "identifier": "wpName", "password": "wpPassword",
            "success": {"status": [302], "cookie": "wikiSession"},
            "profile": {"fetch": "/api.php?action=query&meta=userinfo"},
            "answer": {"redirect": "/index.php?title=Main_Page"},
            "failure": {"redirect": "/index.php?title=Special:UserLogin&error=1"},
        },
        {
            "path": "/api.php", "format": "form", "when": {"action": "clientlogin"},
            "identifier": "username", "password": "password",
            "success": {"status": [200], "json": "/clientlogin/status",
                        "json_equals": "PASS"},
            "profile": {"fetch": "/api.php?action=query&meta=userinfo"},
            "answer": {"json": {"clientlogin": {"status": "PASS"}}},
            "failure": {"status": 200, "json": {"clientlogin": {"status": "FAIL"}}},
        },
    ]  # fmt: skip
    raw["profile"] = {"legacy_id": "/query/userinfo/id", "email": "/query/userinfo/email",
                      "username": "/query/userinfo/name"}  # fmt: skip
    raw["logout"] = {"path": "/api.php", "when": {"action": "logout"}, "methods": ["POST"]}
    raw["password_change"] = {
        "path": "/index.php", "format": "form", "when": {"title": "Special:ChangeCredentials"},
        "new": "password", "confirm": "retype", "fresh": "10m", "forward": True,
    }  # fmt: skip
    raw["identity"] = {"X-Forwarded-User": "username"}


@pytest.fixture
async def start_wiki_proxy(
    wiki_server: TestServer, sqlite_url: str
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Proxy] = []
    upstream = str(wiki_server.make_url("")).rstrip("/")

    async def start(extra: Callable[[dict[str, Any]], None] | None = None) -> Proxy:
        def change(raw: dict[str, Any]) -> None:
            wiki_config(upstream, raw)
            if extra:
                extra(raw)

        server = TestServer(create_app(make_config(upstream, sqlite_url, change)),
                            host="127.0.0.1")  # fmt: skip
        await server.start_server()
        proxy = Proxy(server, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            await proxy.client.close()
            await proxy.server.close()


async def post(proxy: Proxy, path: str, data: Any, **kw: Any) -> tuple[int, str]:
    async with proxy.client.post(proxy.url(path), data=data, allow_redirects=False,
                                 **kw) as response:  # fmt: skip
        return response.status, await response.text()


async def form_login(proxy: Proxy, name: str, password: str) -> tuple[int, str]:
    return await post(proxy, LOGIN_FORM, {"wpName": name, "wpPassword": password})


async def api_login(proxy: Proxy, name: str, password: str) -> tuple[int, str]:
    return await post(proxy, "/api.php",
                      {"action": "clientlogin", "username": name, "password": password})


async def edit(proxy: Proxy, n: int) -> tuple[int, str]:
    return await post(proxy, "/api.php", {"action": "edit", "title": f"P{n}", "text": "x"})


async def test_both_logins_are_captured_and_then_answered_here(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """The form login (title in the query) and the API login (action in the body) are
    captured; then each is answered by authshim without the wiki."""
    proxy = await start_wiki_proxy()
    assert (await form_login(proxy, "Casey", "casey-password"))[0] == 302
    assert (await api_login(proxy, "Dana", "dana-password"))[0] == 200
    assert await proxy.svc.store.find_user("casey@example.com") is not None
    assert await proxy.svc.store.find_user("dana@example.com") is not None
    logins = len(wiki.posts("/index.php")) + len(wiki.posts("/api.php"))
    proxy.client.cookie_jar.clear()
    assert (await api_login(proxy, "Casey", "casey-password"))[0] == 200
    assert (await form_login(proxy, "Dana", "dana-password"))[0] == 302
    assert len(wiki.posts("/index.php")) + len(wiki.posts("/api.php")) == logins


@pytest.mark.parametrize("mode", ["migrate", "cutover"])
async def test_edits_on_the_login_paths_pass_through_unlimited(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki, mode: str
) -> None:
    """Thirty edits by API and by form from one address reach the wiki (no 429, no 400, not
    counted as logins), in cut-over too, and so does an edit larger than server.max_body."""
    proxy = await start_wiki_proxy()
    if mode == "cutover":
        await write_mode(proxy.svc.store, "cutover")
        await proxy.svc.modes.refresh()
    for n in range(15):
        assert await edit(proxy, n) == (200, '{"edit": {"result": "Success"}}')
        status, _ = await post(proxy, f"/index.php?title=F{n}&action=submit",
                               {"wpTextbox1": "text"})  # fmt: skip
        assert status == 302
    big = "y" * (200 * 1024)
    status, _ = await post(proxy, "/api.php", {"action": "edit", "title": "Big", "text": big})
    assert status == 200
    assert wiki.pages["Big"] == big and len(wiki.pages) == 31
    assert not any(k.startswith("login.") for k in proxy.svc.counters.totals)


async def test_in_cutover_an_unmigrated_api_login_never_reaches_the_wiki(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """The API login is authshim's in cut-over: an unmigrated user gets the failure answer."""
    proxy = await start_wiki_proxy()
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    status, body = await api_login(proxy, "Casey", "casey-password")
    assert (status, json.loads(body)) == (200, {"clientlogin": {"status": "FAIL"}})
    assert wiki.posts("/api.php") == []


async def test_an_action_that_disagrees_between_query_and_body_is_refused(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """``?action=edit`` with ``action=clientlogin`` in the body: PHP takes the body's."""
    proxy = await start_wiki_proxy()
    attempt = {"action": "clientlogin", "username": "Casey", "password": "x"}
    status, _ = await post(proxy, "/api.php?action=edit", attempt)
    assert status == 400 and wiki.posts("/api.php") == []


async def test_logout_by_api_ends_the_session(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """POST /api.php action=logout (the wiki's "Log out") revokes authshim's session."""
    proxy = await start_wiki_proxy()
    await form_login(proxy, "Casey", "casey-password")
    proxy.client.cookie_jar.clear()
    await form_login(proxy, "Casey", "casey-password")
    cookie = proxy.session_cookie()
    assert cookie is not None
    assert (await post(proxy, "/api.php", {"action": "logout"}))[0] == 200
    async with aiohttp.ClientSession() as other:
        async with other.get(proxy.url("/.authshim/session"),
                             headers={"Cookie": f"authshim={cookie}"}) as response:  # fmt: skip
            assert response.status == 401


async def test_an_in_app_password_change_without_the_old_password(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """The wiki's change form has no old-password field: a fresh session may change it; both
    authshim and the wiki then take the new password."""
    proxy = await start_wiki_proxy()
    await form_login(proxy, "Casey", "casey-password")  # captured
    proxy.client.cookie_jar.clear()
    await form_login(proxy, "Casey", "casey-password")  # answered here: a fresh session
    status, _ = await post(proxy, "/index.php?title=Special:ChangeCredentials",
                           {"password": "casey-new-pw", "retype": "casey-new-pw"})  # fmt: skip
    assert status == 302
    assert wiki.passwords["Casey"] == "casey-new-pw"  # the wiki changed its copy too
    proxy.client.cookie_jar.clear()
    assert (await form_login(proxy, "Casey", "casey-new-pw"))[0] == 302
    assert proxy.svc.counters.totals["login.local_ok"] == 2


async def test_a_stale_session_needs_the_old_password(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """With password_change.fresh at 0 s, a change without the old password gets 400."""
    proxy = await start_wiki_proxy(lambda raw: raw["password_change"].update(fresh="0s"))
    await form_login(proxy, "Casey", "casey-password")
    proxy.client.cookie_jar.clear()
    await form_login(proxy, "Casey", "casey-password")
    status, _ = await post(proxy, "/index.php?title=Special:ChangeCredentials",
                           {"password": "casey-new-pw", "retype": "casey-new-pw"})  # fmt: skip
    assert status == 400 and wiki.passwords["Casey"] == "casey-password"


async def test_a_password_changed_at_the_wiki_is_recaptured(
    start_wiki_proxy: Callable[..., Any], wiki: Wiki
) -> None:
    """[migration] recapture: Casey's password changed at the wiki (an admin reset there); the
    stored hash refuses it, the wiki accepts it, authshim takes it. The old one stops working."""
    proxy = await start_wiki_proxy(lambda raw: raw["migration"].update(recapture=True))
    await form_login(proxy, "Casey", "casey-password")  # captured
    wiki.passwords["Casey"] = "changed-at-wiki"
    proxy.client.cookie_jar.clear()
    assert (await form_login(proxy, "Casey", "changed-at-wiki"))[0] == 302
    assert proxy.svc.counters.totals["login.recaptured"] == 1
    await proxy.settled()
    logins = len(wiki.posts("/index.php"))
    proxy.client.cookie_jar.clear()
    assert (await form_login(proxy, "Casey", "changed-at-wiki"))[0] == 302  # local now
    assert len(wiki.posts("/index.php")) == logins
    proxy.client.cookie_jar.clear()
    status, _ = await form_login(proxy, "Casey", "casey-password")
    assert status == 200 and proxy.session_cookie() is None  # the wiki's own refusal page
