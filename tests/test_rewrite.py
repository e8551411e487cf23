"""The upstream's own address in Location, Refresh and cookie domains becomes the public one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from proxy.app import create_app
from proxy.errors import ConfigError
from proxy.headers import (
    rewrite_cookie_domain,
    rewrite_refresh,
    rewrite_upstream_urls,
    rewrite_url,
)
from tests.fixtures.proxy import make_config

UP = "http://127.0.0.1:8000"
PUB = "https://www.example.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8000/wp-admin/?a=1#top", "https://www.example.com/wp-admin/?a=1#top"),
        ("HTTP://127.0.0.1:8000", "https://www.example.com"),
        ("//127.0.0.1:8000/x", "//www.example.com/x"),
        (
            "/relative/path?next=http://127.0.0.1:8000/",
            "/relative/path?next=http://127.0.0.1:8000/",
        ),
        ("http://127.0.0.1:8001/other-port", "http://127.0.0.1:8001/other-port"),
        ("https://127.0.0.1:8000/other-scheme", "https://127.0.0.1:8000/other-scheme"),
        ("https://evil.example/", "https://evil.example/"),
        ("http://[::1/broken", "http://[::1/broken"),
    ],
)
def test_rewrite_url_replaces_only_the_upstream_origin(value: str, expected: str) -> None:
    """Only a URL on the upstream's origin changes; relative and foreign URLs stay as they are."""
    assert rewrite_url(value, UP, PUB) == expected


def test_default_ports_are_the_same_origin() -> None:
    """http://host and http://host:80 are one origin."""
    assert rewrite_url("http://legacy.internal:80/a", "http://legacy.internal", PUB) == (
        "https://www.example.com/a"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0; url=http://127.0.0.1:8000/next", "0; url=https://www.example.com/next"),
        ("5;URL='http://127.0.0.1:8000/x'", "5;URL='https://www.example.com/x'"),
        ("3", "3"),
        ("0; url=/relative", "0; url=/relative"),
    ],
)
def test_refresh_urls_are_rewritten(value: str, expected: str) -> None:
    """A Refresh header's URL is rewritten like a Location."""
    assert rewrite_refresh(value, UP, PUB) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sid=1; Domain=127.0.0.1; Path=/", "sid=1; Domain=www.example.com; Path=/"),
        ("sid=1; path=/; domain=.LEGACY.internal", "sid=1; path=/; domain=www.example.com"),
        ("sid=1; Domain=example.org; Path=/", "sid=1; Domain=example.org; Path=/"),
        ("sid=1; Path=/", "sid=1; Path=/"),
    ],
)
def test_cookie_domains_naming_the_upstream_are_rewritten(value: str, expected: str) -> None:
    """Domain=<upstream host> becomes the public host; other domains are left alone."""
    upstream = "http://legacy.internal:8000" if "LEGACY" in value else UP
    assert rewrite_cookie_domain(value, upstream, PUB) == expected


def test_headers_keep_their_order_and_repeats() -> None:
    """Rewriting keeps every header, repeated Set-Cookie included, in order."""
    headers = CIMultiDict(
        [
            ("Set-Cookie", "a=1; Domain=127.0.0.1"),
            ("Location", "http://127.0.0.1:8000/x"),
            ("Set-Cookie", "b=2"),
            ("X-Other", "http://127.0.0.1:8000/kept"),
        ]
    )
    rewrite_upstream_urls(headers, UP, PUB)
    assert list(headers.items()) == [
        ("Set-Cookie", "a=1; Domain=www.example.com"),
        ("Location", "https://www.example.com/x"),
        ("Set-Cookie", "b=2"),
        ("X-Other", "http://127.0.0.1:8000/kept"),
    ]


def test_same_public_and_upstream_origin_changes_nothing() -> None:
    """When clients use the upstream's own address, nothing is rewritten."""
    headers = CIMultiDict([("Location", "http://127.0.0.1:8000/x")])
    rewrite_upstream_urls(headers, UP, "http://127.0.0.1:8000")
    assert headers["Location"] == "http://127.0.0.1:8000/x"


def _redirecting_app(base: list[str]) -> web.Application:
    """An upstream that redirects to its own absolute address, as a site configured with it does."""

    async def bounce(request: web.Request) -> web.Response:
        response = web.Response(status=302, headers={"Location": f"{base[0]}/home"})
        response.headers["Refresh"] = f"0; url={base[0]}/refresh"
        response.set_cookie("sid", "1", domain="127.0.0.1")
        return response

    async def login(request: web.Request) -> web.Response:
        response = web.Response(status=302, headers={"Location": f"{base[0]}/wp-admin/"})
        response.set_cookie("sessionid", "s1", domain="127.0.0.1")
        return response

    app = web.Application()
    app.router.add_get("/bounce", bounce)
    app.router.add_post("/accounts/login/", login)
    return app


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """The redirecting upstream on 127.0.0.1; yields its origin."""
    base: list[str] = []
    server = TestServer(_redirecting_app(base), host="127.0.0.1")
    await server.start_server()
    base.append(str(server.make_url("")).rstrip("/"))
    try:
        yield base[0]
    finally:
        await server.close()


Change = Callable[[dict[str, Any]], None]


async def _through_proxy(
    upstream: str, tmp_path: Path, change: Change | None, method: str, path: str, **kw: Any
) -> tuple[int, CIMultiDict[str]]:
    config = make_config(upstream, f"sqlite:///{tmp_path / 'a.db'}", change)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.request(method, server.make_url(path), allow_redirects=False, **kw) as r,
        ):
            return r.status, CIMultiDict(r.headers)
    finally:
        await server.close()


async def test_forwarded_answers_name_the_request_host(upstream: str, tmp_path: Path) -> None:
    """Without server.public_url, the client's own Host is what redirects name."""
    status, headers = await _through_proxy(
        upstream, tmp_path, None, "GET", "/bounce", headers={"Host": "shop.example:8443"}
    )
    assert status == 302
    assert headers["Location"] == "http://shop.example:8443/home"
    assert headers["Refresh"] == "0; url=http://shop.example:8443/refresh"
    assert "Domain=shop.example" in headers["Set-Cookie"]


async def test_captured_answers_use_the_configured_public_url(
    upstream: str, tmp_path: Path
) -> None:
    """A login answer (judged, not captured here) is rewritten to server.public_url too."""

    def change(raw: dict[str, Any]) -> None:
        raw["server"]["public_url"] = "https://www.example.com/"

    form = {"username": "bob", "password": "pw", "csrfmiddlewaretoken": "t"}
    status, headers = await _through_proxy(
        upstream, tmp_path, change, "POST", "/accounts/login/", data=form
    )
    assert status == 302
    assert headers["Location"] == "https://www.example.com/wp-admin/"
    assert "Domain=www.example.com" in headers["Set-Cookie"]


def test_public_url_must_be_an_origin() -> None:
    """server.public_url with a path or another scheme is refused, naming the key."""
    for bad in ("ftp://x.example", "https://x.example/app", "x.example"):
        with pytest.raises(ConfigError, match=r"server\.public_url"):
            make_config(UP, "sqlite:///x.db", lambda raw, b=bad: raw["server"].update(public_url=b))
