"""Login CSRF (Origin/Referer) on form logins, and refusal of HTTP/0.9 request lines."""

from __future__ import annotations

import pytest

from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BODY = b"username=bob&password=builder-22"


async def post_form(proxy: Proxy, headers: dict[str, str]) -> int:
    async with proxy.client.post(
        proxy.url("/accounts/login/"), data=BODY, headers={**FORM, **headers}
    ) as response:
        await response.read()
        return response.status


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/login"},
        {"Origin": "http://127.0.0.1.evil.example"},
    ],
)
async def test_a_cross_site_form_login_is_refused_unread(
    proxy: Proxy, legacy: FakeLegacy, headers: dict[str, str]
) -> None:
    """A form login posted from another site gets 403 and never reaches the legacy app."""
    assert await post_form(proxy, headers) == 403
    assert legacy.logins() == []


async def test_a_same_site_form_login_passes(proxy: Proxy, legacy: FakeLegacy) -> None:
    """The site's own origin (the request's Host) and a request without either header pass."""
    host = proxy.url("/").rstrip("/")
    assert await post_form(proxy, {"Origin": host}) != 403
    assert await post_form(proxy, {"Referer": host + "/accounts/login/"}) != 403
    assert await post_form(proxy, {}) != 403
    assert len(legacy.logins()) == 1  # the first captured bob; the others were answered here


async def test_public_url_is_the_only_accepted_origin(start_proxy: StartProxy) -> None:
    """With server.public_url set, only that origin (default port or not) is accepted."""
    proxy = await start_proxy(
        lambda raw: raw["server"].update(public_url="https://www.example.com")
    )
    assert await post_form(proxy, {"Origin": "https://www.example.com:443"}) != 403
    assert await post_form(proxy, {"Origin": "http://www.example.com"}) == 403
    assert await post_form(proxy, {"Origin": proxy.url("/").rstrip("/")}) == 403


async def test_json_logins_are_not_origin_checked(proxy: Proxy) -> None:
    """A JSON login needs a content type no cross-site form can send, so it is not checked."""
    async with proxy.client.post(
        proxy.url("/api/login"),
        json={"email": "bob@example.com", "password": "builder-22"},
        headers={"Origin": "https://app.example"},
    ) as response:
        assert response.status == 200


async def test_a_trickled_login_body_gets_408_and_is_never_forwarded(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """A login whose body does not arrive within server.body_timeout gets 408, unforwarded."""
    import asyncio

    proxy = await start_proxy(lambda raw: raw["server"].update(body_timeout="300ms"))
    assert proxy.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        head = (
            "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b'{"email": "bob@')
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")
    assert legacy.logins() == []
