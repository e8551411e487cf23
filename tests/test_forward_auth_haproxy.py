"""recipes/haproxy-forward-auth through a real HAProxy (with Lua): identity from the cached
auth answer, forged headers removed, and a revoked session refused within the TTL."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.accounts import accounts
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import StartProxy
from tests.fixtures.realapps import RECIPES, free_port, stop, wait_for_port
from tests.test_forward_auth_nginx import (
    SLACK,
    TTL,
    Revoke,
    Site,
    _admin_block,
    _host_port,
    _logout,
    _password_change,
    whoami,
)

pytestmark = pytest.mark.slow

RECIPE = RECIPES / "haproxy-forward-auth"


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Any]:
    """Start HAProxy with the recipe in front of authshim and the legacy app; gives its URL."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.skip("haproxy is not installed (.ci/run installs it)")
    started: list[subprocess.Popen[bytes]] = []

    def start(authshim: str, check: str, legacy: str) -> str:
        port = free_port()
        lua = (RECIPE / "authshim.lua").read_text()
        assert "http://127.0.0.1:8082" in lua
        (tmp_path / "authshim.lua").write_text(lua.replace("127.0.0.1:8082", check))
        cfg = (RECIPE / "haproxy.cfg").read_text()
        for old, new in [
            ("127.0.0.1:8081", f"127.0.0.1:{port}"),
            ("127.0.0.1:8080", authshim),
            ("127.0.0.1:8000", legacy),
            ("/etc/haproxy/authshim.lua", str(tmp_path / "authshim.lua")),
        ]:
            assert old in cfg, old
            cfg = cfg.replace(old, new)
        (tmp_path / "haproxy.cfg").write_text(cfg)
        proc = subprocess.Popen([binary, "-db", "-f", str(tmp_path / "haproxy.cfg")])
        started.append(proc)
        wait_for_port(port, proc)
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for proc in started:
            stop(proc)


async def site(
    start_proxy: StartProxy, legacy_server: TestServer, haproxy: Any, tmp_path: Path
) -> Site:
    def change(raw: dict[str, Any]) -> None:
        accounts(tmp_path / "outbox")(raw)
        raw["session"].update(forward_auth_ttl=f"{TTL}s", cache_ttl="0s")
        raw["session"]["forward_auth_listen"] = "127.0.0.1:0"  # the lean listener

    proxy = await start_proxy(change)
    assert proxy.forward_auth is not None
    check = f"127.0.0.1:{proxy.forward_auth.port}"
    base = haproxy(_host_port(proxy.server), check, _host_port(legacy_server))
    return Site(proxy.server, proxy.client, base=base)


async def test_page_views_get_the_identity_from_the_auth_answer(
    start_proxy: StartProxy, legacy_server: TestServer, legacy: FakeLegacy, haproxy: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Logins go through authshim, page views from HAProxy to the legacy app with the
    session's identity; forged identity headers, in either spelling, are removed."""
    via = await site(start_proxy, legacy_server, haproxy, tmp_path)
    assert (await via.form_login("bob", "builder-22")).status == 302
    cookie = via.session_cookie()
    assert cookie is not None and legacy.logins()  # captured through HAProxy
    for _ in range(3):
        assert await whoami(via.base, cookie) == "bob"
    # SECURITY: no session, a forged one, a second cookie, an underscore spelling.
    assert await whoami(via.base, None, **{"X-Forwarded-User": "bob"}) is None
    assert await whoami(via.base, "forged.value", **{"X-Forwarded-User": "bob"}) is None
    # HAProxy reads the last of two cookies (nginx the first): the answer is still the key's.
    assert await whoami(via.base, f"{cookie}; authshim=x") is None
    await whoami(via.base, None, **{"X_Forwarded_User": "bob"})
    assert not any(name.lower() == "x_forwarded_user" for s in legacy.seen for name in s.headers)


@pytest.mark.parametrize("revoke", [_password_change, _admin_block, _logout],
                         ids=["password change", "admin block", "logout"])  # fmt: skip
async def test_a_revoked_session_stops_within_the_ttl(
    start_proxy: StartProxy, legacy_server: TestServer, haproxy: Any, tmp_path: Path,
    revoke: Revoke,
) -> None:  # fmt: skip
    """A copy of a revoked session keeps working only while HAProxy's cached answer lasts."""
    via = await site(start_proxy, legacy_server, haproxy, tmp_path)
    await via.form_login("bob", "builder-22")
    copy = via.session_cookie()
    via.client.cookie_jar.clear()
    await via.form_login("bob", "builder-22")
    if revoke is _logout:
        # A logout ends its own session (per session), so the copy is of the browser's cookie.
        copy = via.session_cookie()
    assert copy is not None and await whoami(via.base, copy) == "bob"
    primed = time.monotonic()
    await revoke(via, copy)
    if time.monotonic() - primed < TTL - 1:
        assert await whoami(via.base, copy) == "bob"  # the cached answer
    while await whoami(via.base, copy) is not None:
        assert time.monotonic() - primed < TTL + SLACK, "still accepted after the TTL"
        await asyncio.sleep(0.2)
