"""``GET /.authshim/session``: answers a web server may cache per session cookie, briefly."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import ConfigError
from tests.fixtures.proxy import Proxy, StartProxy, make_config


def ttl(value: object) -> Any:
    def change(raw: dict[str, Any]) -> None:
        raw["session"]["forward_auth_ttl"] = value

    return change


async def test_answers_carry_the_cache_headers(start_proxy: StartProxy) -> None:
    """200 and 401 say how long nginx may keep them (X-Accel-Expires before Cache-Control,
    which nginx then ignores), private to that cache and varying by cookie."""
    proxy: Proxy = await start_proxy(ttl("7s"))
    async with proxy.client.get(proxy.url("/.authshim/session")) as anonymous:
        assert anonymous.status == 401
        assert anonymous.headers["X-Accel-Expires"] == "7"
    await proxy.form_login("bob", "builder-22")
    await proxy.form_login("bob", "builder-22")
    async with proxy.client.get(proxy.url("/.authshim/session")) as answer:
        assert (answer.status, answer.headers["X-Forwarded-User"]) == (200, "bob")
        names = [name.lower() for name in answer.headers]
        assert names.index("x-accel-expires") < names.index("cache-control")
        assert answer.headers["Cache-Control"] == "private, max-age=7"
        assert answer.headers["Vary"] == "Cookie"
        assert "Set-Cookie" not in answer.headers  # nginx never caches an answer that sets one


async def test_a_zero_ttl_is_never_cached(start_proxy: StartProxy) -> None:
    """forward_auth_ttl = 0 answers no-store with no X-Accel-Expires."""
    zero: Proxy = await start_proxy(ttl(0))
    async with zero.client.get(zero.url("/.authshim/session")) as answer:
        assert answer.headers["Cache-Control"] == "no-store"
        assert "X-Accel-Expires" not in answer.headers


@pytest.mark.parametrize("value", ["61s", "1500ms", "2m"])
def test_a_long_or_fractional_ttl_is_a_config_error(value: str) -> None:
    """The revocation delay stays bounded: whole seconds up to a minute."""
    with pytest.raises(ConfigError, match=r"session\.forward_auth_ttl: must be whole seconds"):
        make_config("http://127.0.0.1:1", "sqlite:///x.db", ttl(value))
