"""recipes/nginx-forward-auth through a real nginx: the identity from a cached or uncached
forward-auth answer, and revoked sessions refused within the cache's TTL."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.accounts import accounts, post_form
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy
from tests.fixtures.realapps import RECIPES, free_port, stop, wait_for_port

pytestmark = pytest.mark.slow

RECIPE = RECIPES / "nginx-forward-auth" / "authshim.conf"
TTL = 3  # session.forward_auth_ttl in these tests, seconds
SLACK = 3.0  # a loaded machine's delay on top of the TTL before a refusal counts as late
MAIN = """daemon off;
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


def recipe(
    folder: Path, *, port: int, authshim: str, check: str, legacy: str, cached: bool
) -> str:
    """The recipe with this test's ports and folders (and its cache off when not ``cached``)."""
    site = RECIPE.read_text()
    for old, new in [
        ("127.0.0.1:8081", f"127.0.0.1:{port}"),
        ("127.0.0.1:8080", authshim),
        ("server 127.0.0.1:8082", f"server {check}"),
        ("127.0.0.1:8000", legacy),
        ("/run/nginx-authshim", str(folder / "auth-cache")),
    ]:
        assert old in site, old
        site = site.replace(old, new)
    if not cached:
        assert "proxy_cache authshim_auth;" in site
        site = site.replace("proxy_cache authshim_auth;", "proxy_cache off;")
    return site


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start nginx with the recipe in front of authshim and the legacy app; gives its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        pytest.skip("nginx is not installed (.ci/run installs nginx-light)")
    started: list[subprocess.Popen[bytes]] = []

    def start(authshim: str, check: str, legacy: str, *, cached: bool) -> str:
        folder = tmp_path / ("cached" if cached else "uncached")
        folder.mkdir()
        port = free_port()
        site = recipe(
            folder, port=port, authshim=authshim, check=check, legacy=legacy, cached=cached
        )
        (folder / "site.conf").write_text(site)
        user = "user root;" if os.geteuid() == 0 else ""  # workers write the cache in tmp_path
        (folder / "nginx.conf").write_text(MAIN.format(dir=folder, user=user))
        proc = subprocess.Popen([binary, "-c", str(folder / "nginx.conf"), "-p", str(folder)])
        started.append(proc)
        wait_for_port(port, proc)
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for proc in started:
            stop(proc)


@dataclass
class Site(Proxy):
    """authshim's test handle, with every request sent to nginx instead."""

    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path


def _host_port(server: TestServer) -> str:
    return str(server.make_url("")).removeprefix("http://").rstrip("/")


async def site(
    start_proxy: StartProxy, legacy_server: TestServer, nginx: Any, tmp_path: Path, cached: bool
) -> Site:
    """authshim with the accounts sections and short TTLs, behind nginx running the recipe."""

    def change(raw: dict[str, Any]) -> None:
        accounts(tmp_path / "outbox")(raw)
        # A revocation made on another replica: no in-process cache hides it.
        raw["session"].update(forward_auth_ttl=f"{TTL}s", cache_ttl="0s")
        # The checks go to the lean listener, on a Unix socket for the uncached recipe.
        socket = f"unix:{tmp_path / 'forward-auth.sock'}"
        raw["session"]["forward_auth_listen"] = "127.0.0.1:0" if cached else socket

    proxy = await start_proxy(change)
    assert proxy.forward_auth is not None
    fa = proxy.svc.config.session.forward_auth_listen
    check = str(fa) if fa is not None and fa.path else f"127.0.0.1:{proxy.forward_auth.port}"
    base = nginx(_host_port(proxy.server), check, _host_port(legacy_server), cached=cached)
    return Site(proxy.server, proxy.client, base=base)


async def whoami(url: str, cookie: str | None, **extra: str) -> str | None:
    """The X-Forwarded-User the legacy app got for a page view through nginx."""
    headers = {"Cookie": f"authshim={cookie}"} if cookie else {}
    async with aiohttp.ClientSession() as client:
        async with client.get(url + "/private/page", headers={**headers, **extra}) as response:
            assert response.status == 200, await response.text()
            seen: dict[str, Any] = await response.json()
    # HAProxy sends header names in lower case.
    names = {name.lower(): value for name, value in seen["headers"].items()}
    user: str | None = names.get("x-forwarded-user")
    return user


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
async def test_page_views_get_the_identity_from_the_auth_answer(
    start_proxy: StartProxy, legacy_server: TestServer, legacy: FakeLegacy, nginx: Any,
    tmp_path: Path, cached: bool,
) -> None:  # fmt: skip
    """Logins go through authshim, page views go from nginx to the legacy app with the
    session's identity, a POST page too; forged identity headers are replaced."""
    via = await site(start_proxy, legacy_server, nginx, tmp_path, cached)
    assert (await via.form_login("bob", "builder-22")).status == 302
    cookie = via.session_cookie()
    assert cookie is not None and legacy.logins()  # captured through nginx
    for _ in range(3):  # the first fills the cache, the others may be answered from it
        assert await whoami(via.base, cookie) == "bob"
    async with via.client.post(via.url("/private/form"), data={"a": "1"}) as response:
        seen = await response.json()
        assert (response.status, seen["headers"]["X-Forwarded-Email"]) == (200, "bob@example.com")
    # SECURITY: no session, a forged one, or a second cookie: the client's copies are replaced.
    assert await whoami(via.base, None, **{"X-Forwarded-User": "bob"}) is None
    assert await whoami(via.base, "forged.value", **{"X-Forwarded-User": "bob"}) is None
    assert await whoami(via.base, f"x; authshim={cookie}") is None
    page_views = [s for s in legacy.seen if s.path.startswith("/private/")]
    assert len(page_views) == 7 and all("authshim" in s.cookies for s in page_views[:4])


Revoke = Callable[[Site, str], Awaitable[None]]


async def _password_change(via: Site, _: str) -> None:
    form = {"old_password": "builder-22", "new_password1": "rebuilt-333",
            "new_password2": "rebuilt-333"}  # fmt: skip
    assert (await post_form(via, "/accounts/password_change/", form))[0] == 302


async def _admin_block(via: Site, _: str) -> None:
    user = await via.svc.store.find_user("bob")
    assert user is not None
    await via.svc.store.set_blocked(user.id, True)  # as the admin API of another replica does


async def _logout(via: Site, stolen: str) -> None:
    async with via.client.get(via.url("/accounts/logout/"), allow_redirects=False) as response:
        assert response.status == 302
    async with aiohttp.ClientSession() as client:  # straight to authshim, no cache between
        url = str(via.server.make_url("/.authshim/session"))
        async with client.get(url, headers={"Cookie": f"authshim={stolen}"}) as answer:
            assert answer.status == 401  # revoked server-side, not only the browser's cookie


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("revoke", [_password_change, _admin_block, _logout],
                         ids=["password change", "admin block", "logout"])  # fmt: skip
async def test_a_revoked_session_stops_within_the_ttl(
    start_proxy: StartProxy, legacy_server: TestServer, nginx: Any, tmp_path: Path,
    cached: bool, revoke: Revoke,
) -> None:  # fmt: skip
    """A copy of a session (another device, a stolen cookie) still works right after the
    revocation only while nginx's cached answer lasts; then it is refused, without a cache at
    once."""
    via = await site(start_proxy, legacy_server, nginx, tmp_path, cached)
    await via.form_login("bob", "builder-22")
    copy = via.session_cookie()
    via.client.cookie_jar.clear()
    await via.form_login("bob", "builder-22")  # the browser that revokes
    if revoke is _logout:
        # A logout ends its own session (per session), so the copy is of the browser's cookie.
        copy = via.session_cookie()
    assert copy is not None and await whoami(via.base, copy) == "bob"  # cached now
    primed = time.monotonic()
    await revoke(via, copy)
    revoked = time.monotonic()
    if not cached:
        assert await whoami(via.base, copy) is None
        return
    if revoked - primed < TTL - 1:  # on a very loaded machine the entry may have expired
        assert await whoami(via.base, copy) == "bob"  # the cached answer, within its TTL
    while await whoami(via.base, copy) is not None:
        assert time.monotonic() - primed < TTL + SLACK, "still accepted after the TTL"
        await asyncio.sleep(0.2)
