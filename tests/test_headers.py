"""Tests for proxy/headers.py: the pure header rules, then the strip through a real proxy."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from proxy.headers import (
    HOP_BY_HOP,
    client_response_headers,
    hop_by_hop,
    identity_names,
    is_trusted,
    normalise_name,
    upstream_request_headers,
    websocket_protocols,
)
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy

STRIP = identity_names(["X-Forwarded-User", "X-Forwarded-Email"])


def request(headers: list[tuple[str, str]], *, remote: str = "10.0.0.9") -> web.BaseRequest:
    return make_mocked_request("GET", "/x", headers=headers).clone(remote=remote)


def upstream(
    headers: list[tuple[str, str]],
    *,
    remote: str = "10.0.0.9",
    identity: dict[str, str] | None = None,
    trusted: tuple[str, ...] = (),
) -> CIMultiDict[str]:
    return upstream_request_headers(
        request(headers, remote=remote),
        identity=identity or {},
        identity_strip=STRIP,
        trusted_proxies=trusted,
    )


def test_names_normalise_case_and_underscore() -> None:
    """Header names compare lower-cased with '_' read as '-'."""
    assert normalise_name("X-Forwarded_USER") == "x-forwarded-user"
    assert identity_names(["X_Auth_Id", "x-auth-id"]) == frozenset({"x-auth-id"})


def test_hop_by_hop_includes_connection_tokens() -> None:
    """Every RFC 9110 hop-by-hop name is listed, plus each token named in Connection headers."""
    headers = CIMultiDict([("Connection", "keep-alive, X-Hop"), ("connection", " X-Other ,")])
    assert hop_by_hop(headers) == set(HOP_BY_HOP) | {"x-hop", "x-other"}
    assert {"te", "trailer", "proxy-authorization", "upgrade"} <= HOP_BY_HOP


def test_request_drops_hop_by_hop_and_host() -> None:
    """Hop-by-hop headers, Connection-named ones, Host and Expect do not go upstream."""
    out = upstream(
        [
            ("Host", "site.example"),
            ("Connection", "X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Expect", "100-continue"),
            ("Accept", "text/html"),
        ]
    )
    names = {n.lower() for n in out}
    assert names.isdisjoint({"connection", "x-hop", "keep-alive", "te", "host", "expect"})
    assert "proxy-authorization" not in names
    assert out["Accept"] == "text/html"


def test_request_keeps_repeated_headers_in_order() -> None:
    """Repeated headers such as Cookie go upstream separately, in the client's order."""
    out = upstream([("Cookie", "a=1"), ("X-Tag", "t"), ("Cookie", "b=2"), ("cookie", "c=3")])
    assert out.getall("Cookie") == ["a=1", "b=2", "c=3"]


def test_spoofed_identity_is_stripped_in_every_spelling() -> None:
    """Client copies of identity headers go whatever their case or '_' spelling, session or not."""
    spoofs = [
        ("X-Forwarded-User", "admin"),
        ("x-forwarded-user", "admin"),
        ("X-Forwarded_User", "admin"),
        ("X_FORWARDED_EMAIL", "boss@example.com"),
    ]
    out = upstream(spoofs)
    assert not {normalise_name(n) for n in out} & STRIP


def test_identity_is_the_only_identity_upstream_sees() -> None:
    """The computed identity headers are set once, replacing any client copy."""
    out = upstream(
        [("X-Forwarded_User", "admin"), ("X-Auth-Id", "7")],
        identity={"X-Forwarded-User": "alice", "X-Auth-Id": "42"},
    )
    assert out.getall("X-Forwarded-User") == ["alice"]
    assert out.getall("X-Auth-Id") == ["42"]
    assert [n for n in out if normalise_name(n) == "x-forwarded-user"] == ["X-Forwarded-User"]


def test_forwarded_headers_from_an_untrusted_peer_are_replaced() -> None:
    """An untrusted peer's X-Forwarded-*, Forwarded and X-Real-IP are not believed."""
    out = upstream(
        [
            ("Host", "site.example"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
        ]
    )
    assert out.getall("X-Forwarded-For") == ["10.0.0.9"]
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "site.example"
    assert "Forwarded" not in out and "X-Real-IP" not in out


def test_forwarded_headers_from_a_trusted_proxy_are_extended() -> None:
    """A trusted proxy's X-Forwarded-For chain gets the peer appended; its Proto is kept."""
    headers = [
        ("Host", "site.example"),
        ("X-Forwarded-For", "1.2.3.4, 5.6.7.8"),
        ("X-Forwarded-For", "9.9.9.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "1.2.3.4"),
    ]
    out = upstream(headers, trusted=("10.0.0.0/8",))
    assert out.getall("X-Forwarded-For") == ["1.2.3.4, 5.6.7.8, 9.9.9.9, 10.0.0.9"]
    assert out["X-Forwarded-Proto"] == "https"
    assert out["X-Forwarded-Host"] == "site.example"
    assert out["X-Real-IP"] == "1.2.3.4"


def test_trusted_matches_addresses_and_networks() -> None:
    """Trusted proxies may be single addresses or CIDR networks; anything else is untrusted."""
    trusted = ("127.0.0.1", "10.0.0.0/8", "::1")
    assert is_trusted("127.0.0.1", trusted)
    assert is_trusted("10.20.30.40", trusted)
    assert is_trusted("::1", trusted)
    assert not is_trusted("192.168.0.1", trusted)
    assert is_trusted("::ffff:10.1.1.1", trusted)
    assert not is_trusted(None, trusted)
    assert not is_trusted("127.0.0.1", ())


def test_response_drops_hop_by_hop_keeps_set_cookies() -> None:
    """Hop-by-hop response headers go; repeated Set-Cookie and Content-Length stay unchanged."""
    upstream_headers = CIMultiDict(
        [
            ("Connection", "X-Up-Hop"),
            ("X-Up-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Set-Cookie", "a=1; Path=/"),
            ("Content-Length", "12"),
            ("Set-Cookie", "b=2; Path=/; HttpOnly"),
        ]
    )
    out = client_response_headers(upstream_headers)
    assert list(out.items()) == [
        ("Set-Cookie", "a=1; Path=/"),
        ("Content-Length", "12"),
        ("Set-Cookie", "b=2; Path=/; HttpOnly"),
    ]


def test_response_chunked_drops_content_length() -> None:
    """A chunked answer loses any Content-Length, since the chunking decides the length."""
    out = client_response_headers(
        CIMultiDict([("Transfer-Encoding", "chunked"), ("Content-Length", "99"), ("ETag", "x")])
    )
    assert list(out.items()) == [("ETag", "x")]


def test_websocket_protocols_in_offered_order() -> None:
    """The offered WebSocket subprotocols are read from every header, in order."""
    headers = CIMultiDict(
        [("Sec-WebSocket-Protocol", "chat.v1, chat.v2"), ("Sec-WebSocket-Protocol", "x")]
    )
    assert websocket_protocols(headers) == ("chat.v1", "chat.v2", "x")
    assert websocket_protocols(CIMultiDict()) == ()


# -- every spelling a gateway folds to the same name ---------------------------------------------


def test_names_fold_the_way_a_cgi_gateway_does() -> None:
    """Any non-alphanumeric run reads as one separator, the ends are trimmed, case is folded."""
    for spelling in (
        "X.Forwarded.User",
        "X_Forwarded_User",
        "x-forwarded-user ",
        " X-Forwarded-User",
        "X~Forwarded~USER",
        "X-Forwarded--User",
        "-X-Forwarded-User_",
    ):
        assert normalise_name(spelling) == "x-forwarded-user", spelling


def test_non_ascii_names_fold_to_the_ascii_letters_a_gateway_may_make() -> None:
    """Long s, dotless i, the Kelvin sign and fullwidth letters fold to their ASCII letter."""
    assert normalise_name("X-Forwarded-U\u017fer") == "x-forwarded-user"
    assert normalise_name("X-Forwarded-Emai\u0131") == "x-forwarded-emai" + "i"
    assert normalise_name("\u212a") == "k"
    assert normalise_name("\uff38-Forwarded-User") == "x-forwarded-user"
    assert normalise_name("X\u00a0Forwarded\u2013User") == "x-forwarded-user"


def test_spoofed_x_forwarded_in_other_spellings_never_go_upstream() -> None:
    """A client's X.Forwarded.Host or X_Forwarded_For is dropped; only ours goes upstream."""
    out = upstream(
        [
            ("Host", "site.example"),
            ("X.Forwarded.Host", "evil.example"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("x.forwarded.proto", "https"),
            ("X.Real.IP", "6.6.6.6"),
        ]
    )
    assert sorted(out) == ["X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"]
    assert out["X-Forwarded-Host"] == "site.example"


def test_public_url_sets_x_forwarded_host_and_proto() -> None:
    """With server.public_url, X-Forwarded-Host/Proto are its host and scheme, not the client's."""
    for trusted in ((), ("10.0.0.0/8",)):
        out = upstream_request_headers(
            request(
                [("Host", "evil.example"), ("X-Forwarded-Host", "evil.example")], remote="10.0.0.9"
            ),
            identity={},
            identity_strip=STRIP,
            trusted_proxies=trusted,
            public_url="https://www.example.com:8443",
        )
        assert out.getall("X-Forwarded-Host") == ["www.example.com:8443"]
        assert out.getall("X-Forwarded-Proto") == ["https"]


# -- through a real proxy to the fake legacy app -------------------------------------------------

SPOOFS = [
    "X.Forwarded.User",
    "X_Forwarded_User",
    "x_forwarded_user",
    "X-Forwarded.User",
    "X~Forwarded~User",
    "x-forwarded-user ",
    "X-Forwarded-User\t",
    "X.Authshim.User.Id",
    "X.Forwarded.Host",
    "X_Forwarded_For",
]


CGI = {"X_FORWARDED_USER", "X_FORWARDED_EMAIL"}


async def _raw_get(port: int, header: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET /spoof HTTP/1.1\r\nHost: site.example\r\n{header}: admin\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("name", SPOOFS)
async def test_spoofed_spellings_never_reach_the_legacy_app(
    proxy: Proxy, legacy: FakeLegacy, name: str
) -> None:
    """A client header a gateway would read as an identity or X-Forwarded-* header is stripped
    (or the request refused): the legacy app never sees the client's value."""
    answer = await _raw_get(proxy.server.port, name)
    assert answer[: len("HTTP/1.1 200")] in (b"HTTP/1.1 200", b"HTTP/1.1 400", b"HTTP/1.0 400")
    for seen in legacy.seen:
        assert "admin" not in seen.headers.values(), seen.headers


async def test_spoofed_spelling_beside_a_real_session(proxy: Proxy, legacy: FakeLegacy) -> None:
    """A logged-in user's X.Forwarded.User is dropped; the legacy app sees only authshim's."""
    assert (await proxy.form_login("alice", "wonderland-1")).status == 302
    async with proxy.client.get(
        proxy.url("/private/"), headers={"X.Forwarded.User": "admin", "X_Forwarded_Email": "b@x"}
    ) as response:
        assert response.status == 200
    seen = legacy.seen[-1]
    cgi = {n: v for n, v in seen.headers.items() if re.sub(r"[^A-Z0-9]", "_", n.upper()) in CGI}
    assert cgi == {"X-Forwarded-User": "Alice", "X-Forwarded-Email": "Alice@Example.com"}


async def test_public_url_is_the_forwarded_host_upstream(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """With server.public_url set, a client's Host never becomes the upstream's
    X-Forwarded-Host (a password-reset link cannot be pointed at another site)."""
    proxy = await start_proxy(
        lambda raw: raw["server"].update(public_url="https://www.example.com")
    )
    async with proxy.client.get(
        proxy.url("/accounts/password_reset/"),
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    ) as response:
        assert response.status == 200
    seen = legacy.seen[-1]
    assert seen.headers["X-Forwarded-Host"] == "www.example.com"
    assert seen.headers["X-Forwarded-Proto"] == "https"
