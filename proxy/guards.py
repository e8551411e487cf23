"""Pure checks on a request before anything is looked up: its origin (login CSRF) and its
request line. (Whether its fields are unambiguous is ``proxy/reading``'s business.)"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from proxy.answers import problem

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(url: str) -> tuple[str, str] | None:
    """``(scheme, host[:port])`` of a URL, lower-case, the default port dropped."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    netloc = host if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return scheme, netloc


def same_site(request: web.BaseRequest, public_url: str | None) -> bool:
    """Whether a form POST comes from the site itself, by its Origin (else its Referer).

    Without ``public_url`` the origin's host must be the request's Host. A request with
    neither header is no browser form post (browsers send Origin on every POST) and passes.
    """
    origins = request.headers.getall("Origin", [])
    referers = request.headers.getall("Referer", [])
    if len(origins) > 1 or len(referers) > 1:
        return False  # SECURITY: two values leave it to a parser which one counts
    claimed = origins[0] if origins else referers[0] if referers else None
    if claimed is None:
        return True
    origin = _origin(claimed)  # "null" (sandboxed frames, file:) is no origin: refused
    if origin is None:
        return False
    if public_url is not None:
        return origin == _origin(public_url)
    return origin[1] == request.host.lower()


def http09_refusal(request: web.BaseRequest) -> web.Response | None:
    """A 400 that closes the connection for a request line without an HTTP/1.x version."""
    # SECURITY: llhttp takes "GET /x\r\n" as HTTP/0.9 yet still reads headers after it; a
    # front proxy that reads it as real 0.9 (no headers) frames what follows differently.
    if request.version >= (1, 0):
        return None
    response = problem(400, "the request line needs HTTP/1.0 or HTTP/1.1")
    response.force_close()
    return response
