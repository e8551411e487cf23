"""Pure checks on an intercepted request before anything is looked up: its origin (login CSRF)
and whether its credentials are unambiguous (no parser differential with the legacy app)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from proxy.answers import problem
from proxy.errors import AmbiguousBody

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


def unambiguous(raw: bytes, fmt: str, names: Iterable[str]) -> None:
    """Raise ``AmbiguousBody`` when a credential field appears twice (or JSON has any
    repeated key): authshim and the legacy app could then read different users."""
    if fmt == "json":
        try:
            json.loads(raw, object_pairs_hook=_unique_pairs)
        except _Repeated:
            raise AmbiguousBody("the JSON body repeats a key") from None
        except (RecursionError, ValueError):
            # Read by orjson already; Python's parser stops sooner on deep nesting.
            raise AmbiguousBody("the JSON body is nested too deeply") from None
        return
    wanted = set(names)
    seen: set[str] = set()
    for key, _ in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if key in wanted:
            if key in seen:
                raise AmbiguousBody(f"the field {key!r} is given more than once")
            seen.add(key)


class _Repeated(ValueError):
    """A JSON object repeats a key (raised through json.loads by the pairs hook)."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Repeated(key)
        result[key] = value
    return result


def http09_refusal(request: web.BaseRequest) -> web.Response | None:
    """A 400 that closes the connection for a request line without an HTTP/1.x version."""
    # SECURITY: llhttp takes "GET /x\r\n" as HTTP/0.9 yet still reads headers after it; a
    # front proxy that reads it as real 0.9 (no headers) frames what follows differently.
    if request.version >= (1, 0):
        return None
    response = problem(400, "the request line needs HTTP/1.0 or HTTP/1.1")
    response.force_close()
    return response
