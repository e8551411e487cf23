"""One reading: what authshim forwards on an intercepted route is what it read, or nothing.

The fake legacy app reads login bodies as a real framework would (a faithful emulation of each
parser; tests/test_reading_parsers.py holds the real ones to the same rules). Each attack lets an
attacker who owns one legacy account (carol) make a naive proxy capture the victim (bob) with
the attacker's password; through authshim each is refused with 400 before the legacy app hears
of it, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import pytest

from store.validation import normalise_identifier
from tests.accounts import accounts
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy


def php_post(query: str, body: bytes) -> dict[str, str]:
    """PHP's $_POST: leading spaces dropped, ' ' and '.' read as '_', NUL ends a name, an
    unclosed '[' read as '_'; the last value wins."""
    fields: dict[str, str] = {}
    for part in body.decode("latin-1").split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        name = unquote_plus(key, encoding="latin-1").lstrip(" ").split("\x00")[0]
        if "[" in name and "]" not in name:
            name = name.replace("[", "_", 1)
        name = name.replace(" ", "_").replace(".", "_")
        fields[name] = unquote_plus(value, encoding="latin-1")
    return fields


def go_json(query: str, body: bytes) -> dict[str, str]:
    """Go's encoding/json into a struct with fields Email and Password: keys matched without
    regard to case (Unicode folding), the last match wins."""
    fields: dict[str, str] = {}
    for key, value in json.loads(body, object_pairs_hook=list):
        for wanted in ("email", "password"):
            if key.casefold() == wanted and isinstance(value, str):
                fields[wanted] = value
    return fields


def servlet(query: str, body: bytes) -> dict[str, str]:
    """Java Servlet getParameter: the query's values come first, then the body's; first wins."""
    fields: dict[str, str] = {}
    pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(body.decode(), True)
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


@pytest.fixture
async def looked_up(start_proxy: StartProxy, tmp_path: Any) -> Proxy:
    """authshim whose form login takes its profile from the look-up by identifier, the source
    that trusts authshim's reading most."""

    def change(raw: dict[str, Any]) -> None:
        accounts(tmp_path / "outbox")(raw)
        for route in raw["login"]:
            route["profile"] = {"lookup": True}

    result: Proxy = await start_proxy(change)
    return result


async def post_raw(proxy: Proxy, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    async with proxy.client.get(proxy.url("/accounts/login/")) as page:
        await page.read()
    async with proxy.client.post(
        proxy.url(path), data=body, headers={"Content-Type": content_type},
        allow_redirects=False,
    ) as response:  # fmt: skip
        return response.status, await response.text()


def csrf(proxy: Proxy) -> str:
    return proxy.client.cookie_jar.filter_cookies(proxy.server.make_url("/"))["csrftoken"].value


async def assert_refused(proxy: Proxy, legacy: FakeLegacy, status: int) -> None:
    assert status == 400
    assert legacy.logins() == []  # never forwarded
    assert await proxy.svc.store.find_user(normalise_identifier("bob")) is None


@pytest.mark.parametrize(
    "extra",
    ["&+username=carol", "&username%00x=carol", "&%20username=carol", "&username.=carol",
     "&USERNAME=carol", "&username[]=carol", "&x[username]=carol", "&username=carol"],
)  # fmt: skip
async def test_a_second_spelling_of_the_identifier_is_refused(
    looked_up: Proxy, legacy: FakeLegacy, extra: str
) -> None:
    """``username=bob&password=<carol's>`` plus a name PHP (or Rack, qs, ASP.NET) reads as
    ``username``: a naive proxy captured bob with carol's password."""
    legacy.reads = php_post
    async with looked_up.client.get(looked_up.url("/accounts/login/")) as page:
        await page.read()
    body = f"csrfmiddlewaretoken={csrf(looked_up)}&username=bob&password=singer-333{extra}"
    async with looked_up.client.post(
        looked_up.url("/accounts/login/"), data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False,
    ) as response:  # fmt: skip
        await response.read()
    await assert_refused(looked_up, legacy, response.status)


@pytest.mark.parametrize("key", ["EMAIL", "Email", "eMail", "\\u0045mail", "pa\u017f\u017fword"])
async def test_json_keys_equal_under_case_folding_are_refused(
    looked_up: Proxy, legacy: FakeLegacy, key: str
) -> None:
    """Go and ASP.NET match JSON keys without regard to case (Go folds U+017F to 's'), the
    last one winning."""
    legacy.reads = go_json
    fields = ['"email":"bob@example.com"', '"password":"singer-333"', f'"{key}":"carol@x.io"']
    body = ("{" + ",".join(fields) + "}").encode()
    status, _ = await post_raw(looked_up, "/api/login", body, "application/json")
    await assert_refused(looked_up, legacy, status)


async def test_a_credential_in_the_query_string_is_refused(
    looked_up: Proxy, legacy: FakeLegacy
) -> None:
    """A Servlet (or ASP.NET Request[], Flask request.values) reads the query's ``username``."""
    legacy.reads = servlet
    async with looked_up.client.get(looked_up.url("/accounts/login/")) as page:
        await page.read()
    body = f"csrfmiddlewaretoken={csrf(looked_up)}&username=bob&password=singer-333"
    async with looked_up.client.post(
        looked_up.url("/accounts/login/?username=carol"), data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False,
    ) as response:  # fmt: skip
        await response.read()
    await assert_refused(looked_up, legacy, response.status)


async def test_multipart_naming_a_credential_is_refused_not_forwarded(
    looked_up: Proxy, legacy: FakeLegacy
) -> None:
    """A multipart body authshim does not read, but a framework would: refused, in migrate
    mode too (before, it went to the legacy app unread and unlimited by account)."""
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbob\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nx\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    status, _ = await post_raw(
        looked_up, "/accounts/login/", body, f"multipart/form-data; boundary={boundary}"
    )
    await assert_refused(looked_up, legacy, status)


async def test_the_legacy_app_receives_the_body_authshim_read(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A login is forwarded re-encoded from authshim's parse: the same fields in the same order,
    whatever odd-but-unambiguous spelling the client used (``;`` inside a value, ``%7E``)."""
    async with proxy.client.get(proxy.url("/accounts/login/")) as page:
        await page.read()
    body = f"csrfmiddlewaretoken={csrf(proxy)}&username=carol&password=singer-333&note=a;b%7Ec"
    async with proxy.client.post(
        proxy.url("/accounts/login/"), data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False,
    ) as response:  # fmt: skip
        await response.read()
    assert response.status == 302
    sent = legacy.logins()[-1].body
    assert parse_qsl(sent.decode()) == parse_qsl(body)
    assert b";" not in sent  # a ';' a Rack 2 app would split on is sent percent-encoded
