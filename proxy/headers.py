"""Pure header helpers: hop-by-hop removal, X-Forwarded-*, identity strip and set, and the
upstream's address in answers rewritten to the public one.

Nothing here does I/O; the forwarder (``proxy/forward.py``) wires these into requests.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 7.6.1, plus the pre-standard names that proxies still meet in the wild.
HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

# Headers that describe the client's network position. Only a trusted proxy may supply them;
# from anyone else they are dropped so the legacy app cannot be told a made-up client address.
# Normalised names (``normalise_name``): ``X.Real.IP`` is X-Real-IP to a CGI gateway.
_FORWARDING = frozenset({"forwarded", "x-real-ip", "x-forwarded-port", "x-forwarded-prefix"})

# Host: aiohttp's client sends the upstream's own; the client's goes in X-Forwarded-Host.
# Expect: aiohttp's server already answered ``100-continue`` to the client, and aiohttp's client
# would otherwise wait for a second 100 from the upstream before sending the body.
_REQUEST_ONLY = frozenset({"host", "expect"})

# aiohttp's client makes its own WebSocket handshake upstream: the client's key, version and
# offered extensions belong to the other connection (compression is not negotiated upstream).
WEBSOCKET_HANDSHAKE: frozenset[str] = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)

_XFF, _XFP, _XFH = "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"

_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HeaderSource = CIMultiDictProxy[str] | CIMultiDict[str]


_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


# Cached: the same few header names arrive on every request.
@lru_cache(maxsize=512)
def normalise_name(name: str) -> str:
    """Return the name a server behind a gateway may read ``name`` as: case folded, every run of
    characters other than ASCII letters and digits read as one ``-``, and none at either end.

    CGI gateways (lighttpd, Apache's mod_cgi, PHP-FPM behind most servers) turn every
    non-alphanumeric character into ``_`` (``X.Forwarded.User`` becomes ``HTTP_X_FORWARDED_USER``),
    and some trim what surrounds a name. A non-ASCII letter counts as the ASCII letter that
    Unicode folding or upper-casing makes of it (long s U+017F is ``s``, dotless i U+0131 is
    ``i``, the Kelvin sign is ``k``), as a gateway in a Unicode-aware language may make it; any
    other is a separator.
    """
    if not name.isascii():
        name = "".join(map(_ascii_letter, unicodedata.normalize("NFKC", name)))
    return _NOT_ALNUM.sub("-", name.lower()).strip("-")


def _ascii_letter(char: str) -> str:
    for folded in (char.casefold(), char.upper().lower(), char.lower()):
        if folded.isascii():
            return folded
    return "-"


def identity_names(names: Iterable[str]) -> frozenset[str]:
    """Return the normalised form of every identity header name."""
    return frozenset(normalise_name(n) for n in names)


# The X-Forwarded-* headers authshim sets itself; no client spelling of them goes upstream.
_X_FORWARDED = identity_names([_XFF, _XFP, _XFH])


def hop_by_hop(headers: HeaderSource) -> set[str]:
    """Return the lower-cased names that must not cross the proxy: the fixed set and every token
    listed in a ``Connection`` header."""
    names = set(HOP_BY_HOP)
    for value in headers.getall(hdrs.CONNECTION, ()):
        names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[tuple[_IPNetwork, ...], frozenset[str]]:
    """Split the configured trusted proxies into networks and the entries that are not IPs."""
    networks: list[_IPNetwork] = []
    names: set[str] = set()
    for entry in trusted:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return tuple(networks), frozenset(names)


def is_trusted(peer: str | None, trusted_proxies: tuple[str, ...]) -> bool:
    """Return whether ``peer`` is one of the trusted proxies (addresses or CIDR networks)."""
    if peer is None or not trusted_proxies:
        return False
    return _is_trusted(peer, trusted_proxies)


# Every request asks, mostly for the same few peers (the load balancers). Small: behind a
# trusted proxy each client address is asked too, and a 10-minute mix of clients with
# addresses of their own filled a 4,096-entry cache for minutes (0.3 MiB of slow growth).
@lru_cache(maxsize=256)
def _is_trusted(peer: str, trusted_proxies: tuple[str, ...]) -> bool:
    networks, names = _networks(trusted_proxies)
    if peer in names:
        return True
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener reports IPv4 peers this way
    return any(address in net for net in networks)


def upstream_request_headers(
    request: web.BaseRequest,
    *,
    identity: Mapping[str, str],
    identity_strip: frozenset[str],
    trusted_proxies: tuple[str, ...],
    public_url: str | None = None,
) -> CIMultiDict[str]:
    """Return the headers to send upstream for ``request``.

    The client's headers are copied in order (repeated ones stay repeated) minus hop-by-hop
    headers, Host, Expect, every client copy (in any spelling, see ``normalise_name``) of an
    identity header or of X-Forwarded-For/Proto/Host, and forwarding headers from untrusted
    peers; then ``identity`` and X-Forwarded-For/Proto/Host are set. A trusted proxy's
    X-Forwarded-For is extended and its X-Forwarded-Proto/Host are kept, unless ``public_url``
    (``server.public_url``) is set: then its scheme and host are X-Forwarded-Proto/Host.
    """
    source = request.headers
    peer = request.remote
    trusted = is_trusted(peer, trusted_proxies)
    drop = hop_by_hop(source) | _REQUEST_ONLY
    # SECURITY: identity headers reach the upstream only from us, and so do the X-Forwarded-*
    # we set. Names compare normalised, so that ``X.Forwarded.User`` or ``X-Forwarded_User``
    # cannot slip past: a CGI gateway reads both as ``HTTP_X_FORWARDED_USER``.
    strip = identity_strip | identity_names(identity) | _X_FORWARDED

    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in source.items():
        if name.lower() in drop:
            continue
        normal = normalise_name(name)
        if normal in strip:
            continue  # identity: only ours; X-Forwarded-*: set below from what we know
        if normal in _FORWARDING and not trusted:  # SECURITY: see _FORWARDING
            continue
        headers.add(name, value)

    for name, value in identity.items():
        headers.add(name, value)

    if chain := _forwarded_for(source, peer, trusted):
        headers[_XFF] = chain
    if public_url is not None:
        # SECURITY: the legacy app builds reset links and redirects from X-Forwarded-Host; a
        # client's Host must not choose where a password-reset mail points.
        scheme, host = _public_scheme_host(public_url)
        headers[_XFP], headers[_XFH] = scheme, host
    else:
        headers[_XFP] = (trusted and source.get(_XFP)) or request.scheme
        headers[_XFH] = (trusted and source.get(_XFH)) or request.host
    return headers


@lru_cache(maxsize=8)
def _public_scheme_host(public_url: str) -> tuple[str, str]:
    parts = urlsplit(public_url)
    return parts.scheme, parts.netloc


def _forwarded_for(source: HeaderSource, peer: str | None, trusted: bool) -> str:
    """Append the peer to the client's chain when the peer is trusted, else start a new one."""
    chain = [v.strip() for v in source.getall(_XFF, ()) if v.strip()] if trusted else []
    if peer is not None:
        chain.append(peer)
    return ", ".join(chain)


def client_response_headers(upstream_headers: HeaderSource) -> CIMultiDict[str]:
    """Return the upstream's response headers fit for the client.

    Hop-by-hop headers go; every other header, repeated ``Set-Cookie`` included, is kept in
    order and unchanged. ``Content-Length`` is kept so downloads keep their length, unless the
    upstream sent the body chunked, which overrides any length (RFC 9112 6.3).
    """
    drop = hop_by_hop(upstream_headers)
    if hdrs.TRANSFER_ENCODING in upstream_headers:
        drop.add("content-length")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream_headers.items():
        if name.lower() not in drop:
            headers.add(name, value)
    return headers


def websocket_protocols(headers: HeaderSource) -> tuple[str, ...]:
    """Return the subprotocols a WebSocket handshake offers, in the client's order."""
    values = headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ())
    return tuple(token.strip() for v in values for token in v.split(",") if token.strip())


# -- the upstream's own address, rewritten to the public one in answers ---------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443}
_REFRESH = re.compile(
    r"""^(?P<head>\s*\d+(?:\.\d*)?\s*[;,]\s*(?:url\s*=\s*)?)(?P<q>['"]?)(?P<url>.*?)(?P=q)\s*$""",
    re.IGNORECASE,
)


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, (host or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def rewrite_url(value: str, upstream: str, public: str) -> str:
    """``value`` with the upstream's origin replaced by the public one; any other URL as is.

    ``upstream`` and ``public`` are origins such as ``http://127.0.0.1:8000``. Relative URLs are
    left alone; a scheme-relative ``//host:port/x`` naming the upstream gets the public host.
    """
    try:
        parts = urlsplit(value.strip())
        up, pub = urlsplit(upstream), urlsplit(public)
        port = parts.port
        up_port = up.port
    except ValueError:
        return value
    if not parts.netloc:
        return value
    scheme = parts.scheme or up.scheme  # scheme-relative: compare with the upstream's scheme
    if _origin(scheme, parts.hostname, port) != _origin(up.scheme, up.hostname, up_port):
        return value
    return urlunsplit(
        (pub.scheme if parts.scheme else "", pub.netloc, parts.path, parts.query, parts.fragment)
    )


def rewrite_refresh(value: str, upstream: str, public: str) -> str:
    """A ``Refresh: 0; url=...`` header with its URL rewritten by ``rewrite_url``."""
    m = _REFRESH.match(value)
    if m is None or not m.group("url"):
        return value
    url = rewrite_url(m.group("url"), upstream, public)
    return f"{m.group('head')}{m.group('q')}{url}{m.group('q')}"


def rewrite_cookie_domain(value: str, upstream: str, public: str) -> str:
    """A ``Set-Cookie`` value whose ``Domain`` names the upstream's host, set to the public host."""
    up_host, pub_host = urlsplit(upstream).hostname, urlsplit(public).hostname
    if not up_host or not pub_host or up_host == pub_host:
        return value
    attributes = value.split(";")
    for i, attribute in enumerate(attributes[1:], start=1):
        name, sep, domain = attribute.partition("=")
        named = domain.strip().lstrip(".").lower()
        if sep and name.strip().lower() == "domain" and named == up_host:
            attributes[i] = f"{name}={pub_host}"
    return ";".join(attributes)


_REWRITERS = {
    "location": rewrite_url,
    "content-location": rewrite_url,
    "refresh": rewrite_refresh,
    "set-cookie": rewrite_cookie_domain,
}


def may_name_upstream(headers: HeaderSource) -> bool:
    """Whether ``headers`` hold any header that ``rewrite_upstream_urls`` would look at."""
    return any(
        name in headers for name in ("Location", "Set-Cookie", "Refresh", "Content-Location")
    )


def rewrite_upstream_urls(headers: CIMultiDict[str], upstream: str, public: str) -> None:
    """Rewrite ``Location``, ``Refresh`` and cookie domains naming the upstream, in place."""
    if not may_name_upstream(headers) or _same_origin(upstream, public):
        return
    items = list(headers.items())
    headers.clear()
    for name, value in items:
        rewrite = _REWRITERS.get(name.lower())
        headers.add(name, rewrite(value, upstream, public) if rewrite else value)


@lru_cache(maxsize=256)
def _same_origin(upstream: str, public: str) -> bool:
    return _origin(*_split_origin(upstream)) == _origin(*_split_origin(public))


def _split_origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def public_origin(
    request: web.BaseRequest, *, configured: str | None, trusted_proxies: tuple[str, ...]
) -> str:
    """The origin clients use: ``server.public_url``, else the request's scheme and host."""
    if configured:
        return configured
    trusted = is_trusted(request.remote, trusted_proxies)
    scheme = (trusted and request.headers.get(_XFP, "").split(",")[0].strip()) or request.scheme
    host = (trusted and request.headers.get(_XFH, "").split(",")[0].strip()) or request.host
    return f"{scheme}://{host}"
