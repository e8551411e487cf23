"""Small pieces the reset, sign-up and password flows share (the login flow has its own)."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from aiohttp import web

from proxy.answers import problem
from proxy.bodies import BodyTooLarge, read_body
from proxy.guards import same_site
from proxy.services import Services
from store.base import User
from store.errors import StoreError

RETRY_AFTER = {"Retry-After": "1"}


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
    try:
        # SECURITY: a client trickling its body must not hold a handler (and its memory) forever.
        async with asyncio.timeout(server.body_timeout):
            return await read_body(request, server.max_body)
    except BodyTooLarge as exc:
        raise Refusal("too_large", problem(413, str(exc))) from None
    except TimeoutError:
        raise Refusal("body_timeout", problem(408, "the body did not arrive in time")) from None


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


async def forward_raw(request: web.Request, svc: Services, raw: bytes) -> web.StreamResponse:
    """Forward a request whose body was already read, unchanged, with the session's identity."""
    user = await session_user(request, svc)
    return await svc.forwarder.forward(request, body=raw, identity=svc.identity(user))


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
