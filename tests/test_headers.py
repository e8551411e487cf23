"""Tests for proxy/headers.py: the pure header rules, no sockets."""

from __future__ import annotations

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
