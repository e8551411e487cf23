"""Small pieces the reset, sign-up and password flows share (the login flow has its own)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from proxy import log
from proxy.answers import problem
from proxy.bodies import BodyTooLarge, read_body
from proxy.config.matching import POST, Match
from proxy.errors import AmbiguousBody, UnreadableBody
from proxy.guards import same_site
from proxy.reading import Reading, read_request
from proxy.services import Services
from store.base import User
from store.errors import StoreError

RETRY_AFTER = {"Retry-After": "1"}
# The body of a request read before its route was chosen (proxy/choose.py), on the request.
PRE_READ = web.RequestKey("authshim.body", bytes)


class Refusal(Exception):
    """An intercepted request refused before its story starts: the outcome and the answer."""

    def __init__(self, outcome: str, response: web.Response) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.response = response


async def read_intercepted(
    request: web.Request, svc: Services, fmt: str, *, forms_same_site: bool = True
) -> bytes:
    """The body of an intercepted POST, within ``server.max_body`` and ``server.body_timeout``.

    Raises:
        Refusal: a form posted from another site (403), a body too large (413) or too slow (408).
    """
    server = svc.config.server
    if forms_same_site and fmt == "form" and not same_site(request, server.public_url):
        # SECURITY: another site must not post this form with the browser's cookies (CSRF).
        raise Refusal(
            "forbidden_origin", problem(403, "this form may only be posted from the site")
        )
    if (early := request.get(PRE_READ)) is not None:  # read already to choose the route
        if len(early) > server.max_body:
            message = f"the body is larger than {server.max_body} bytes"
            raise Refusal("too_large", problem(413, message))
        return bytes(early)
    try:
        # SECURITY: a client trickling its body must not hold a handler (and its memory) forever.
        async with asyncio.timeout(server.body_timeout):
            return await read_body(request, server.max_body)
    except BodyTooLarge as exc:
        raise Refusal("too_large", problem(413, str(exc))) from None
    except TimeoutError:
        raise Refusal("body_timeout", problem(408, "the body did not arrive in time")) from None


@dataclass(frozen=True, slots=True)
class Routing:
    """The fields that choose between intercepted routes sharing one path (a front
    controller's ``action``): their names, this route's ``Match``, the other routes' of the
    path, and the credential fields of those other routes (``foreign``), which a request to
    this one must not carry."""

    names: tuple[str, ...] = ()
    own: Match = POST
    others: tuple[Match, ...] = ()
    foreign: tuple[str, ...] = ()

    def mine(self, values: Mapping[str, str]) -> bool:
        """Whether the routing fields authshim read (query and body agreeing) name this route:
        its own ``when`` holds, or (a route without one) no other route's does."""
        if self.own.when:
            return self.own.holds(values)
        return not any(other.holds(values) for other in self.others if other.when)


NO_ROUTING = Routing()


@dataclass(frozen=True, slots=True)
class Read:
    """An intercepted request as authshim read it: ``reading``, or None when the body is not
    in the route's format and no framework could read a credential from it (``raw`` may then
    be forwarded as it came); ``target`` is what goes upstream: the route's path and the
    re-encoded query."""

    raw: bytes = field(repr=False)
    reading: Reading | None
    target: str
    unread: str = ""  # why the body could not be read


async def read_route(
    request: web.Request,
    svc: Services,
    *,
    path: str,
    fmt: str,
    credentials: Iterable[str],
    routing: Iterable[str] = (),
    forms_same_site: bool = True,
) -> Read:
    """Read an intercepted request once, the one way every mainstream framework agrees on
    (``proxy/reading``).

    Raises:
        Refusal: as ``read_intercepted``, or 400 when a framework could read a credential or
            routing field otherwise than authshim (logged with the rule, counted).
    """
    raw = await read_intercepted(request, svc, fmt, forms_same_site=forms_same_site)
    query = request.rel_url.raw_query_string
    try:
        reading = read_request(
            raw, content_type=request.headers.get(hdrs.CONTENT_TYPE, ""), query=query,
            fmt=fmt, credentials=credentials, routing=routing,
        )  # fmt: skip
    except AmbiguousBody as exc:
        # SECURITY: forwarded, this request could name one user to authshim and another to
        # the legacy app; refused, it names nobody.
        svc.counters.add("reading.refused")
        log.event("reading.refused", route=path, reason=str(exc))
        raise Refusal("ambiguous", problem(400, str(exc))) from None
    except UnreadableBody as exc:
        return Read(raw, None, _target(path, query), unread=str(exc))
    return Read(raw, reading, _target(path, reading.query))


def _target(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()``), for the log line."""
    return round((time.perf_counter() - started) * 1000, 1)


def body_format(request: web.BaseRequest) -> str:
    """``json`` for a JSON request, else ``form``: for authshim's own pages, which take both."""
    return "json" if "json" in request.content_type else "form"


async def session_user(request: web.Request, svc: Services) -> User | None:
    """The user of the request's session, or None (also when the store fails)."""
    try:
        return await svc.session_user(dict(request.cookies))
    except StoreError:
        return None


async def forward_read(request: web.Request, svc: Services, read: Read) -> web.StreamResponse:
    """Forward an intercepted request as authshim read it (re-encoded), with the session's
    identity; a body it could not read (and that names no credential) goes as it came."""
    user = await session_user(request, svc)
    body = read.reading.body if read.reading is not None else read.raw
    return await svc.forwarder.forward(
        request, body=body, identity=svc.identity(user), target=read.target
    )


async def forward_reading(
    request: web.Request, svc: Services, reading: Reading, target: str
) -> web.StreamResponse:
    """Forward an intercepted request as authshim read it, with the session's identity."""
    user = await session_user(request, svc)
    return await svc.forwarder.forward(
        request, body=reading.body, identity=svc.identity(user), target=target
    )


def put_pointer(doc: dict[str, Any], pointer: str | None, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` at an RFC 6901 pointer, making objects on the way.

    A pointer through something that is not an object leaves ``doc`` as it was.
    """
    result = copy.deepcopy(doc)
    if not pointer or not pointer.startswith("/"):
        return result
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    node: Any = result
    for token in tokens[:-1]:
        if not isinstance(node, dict):
            return copy.deepcopy(doc)
        node = node.setdefault(token, {})
    if not isinstance(node, dict):
        return copy.deepcopy(doc)
    node[tokens[-1]] = value
    return result


def unavailable(message: str) -> web.Response:
    """503 with ``Retry-After``: a dependency (store, pool, look-up) cannot serve right now."""
    return problem(503, message, headers=RETRY_AFTER)
