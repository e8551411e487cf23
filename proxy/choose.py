"""Choosing among the routes of one path by their ``when`` fields, read as the legacy app would.

A front controller serves logins and everything else on one path, told apart by a field that
PHP's ``$_REQUEST`` (or Rack's params, or MediaWiki's ``getVal``) reads from the body as readily
as from the query. So the body is read before the route is chosen: up to ``server.max_scan``
bytes, parsed the one way every framework agrees on (proxy/reading: query and body must agree,
no second spelling of a routing field). A request whose fields name no route passes through
untouched: not limited, not counted, not bound by ``server.max_body``, in cut-over too.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlencode

from aiohttp import hdrs, web

from proxy import log
from proxy.answers import problem
from proxy.bodies import BodyTooLarge, read_body
from proxy.config.matching import Match
from proxy.errors import AmbiguousBody, UnreadableBody
from proxy.flows.common import PRE_READ
from proxy.flows.passthrough import passthrough
from proxy.reading import read_request
from proxy.services import Services

Handler = Callable[[web.Request, Services], Awaitable[web.StreamResponse]]
Choices = Sequence[tuple[Match, Handler]]


def conditional(choices: Choices, names: tuple[str, ...]) -> Handler:
    """A handler that gives a request to the first route whose ``when`` holds (routes without
    one last), or passes it through."""
    ordered = [c for c in choices if c[0].when] + [c for c in choices if not c[0].when]

    async def route(request: web.Request, svc: Services) -> web.StreamResponse:
        try:
            values = await routing_values(request, svc, names)
        except AmbiguousBody as exc:
            # SECURITY: a routing field some framework reads otherwise: the request could be a
            # login to the legacy app and anything else to authshim.
            svc.counters.add("reading.refused")
            log.event("reading.refused", route=request.path, reason=str(exc))
            return problem(400, str(exc))
        except BodyTooLarge as exc:
            return problem(413, str(exc))
        except TimeoutError:
            return problem(408, "the body did not arrive in time")
        for match, handler in ordered:
            if match.holds(values):
                return await handler(request, svc)
        return await passthrough(request, svc)

    return route


async def routing_values(
    request: web.Request, svc: Services, names: tuple[str, ...]
) -> dict[str, str]:
    """The routing fields of a request as every framework reads them (query and body agreeing).

    Raises:
        AmbiguousBody: a framework could read a routing field otherwise.
        BodyTooLarge: the body is larger than ``server.max_scan``.
        TimeoutError: the body did not arrive within ``server.body_timeout``.
    """
    server = svc.config.server
    raw = b""
    if request.body_exists:
        async with asyncio.timeout(server.body_timeout):
            raw = await read_body(request, server.max_scan)
        request[PRE_READ] = raw
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
    query = request.rel_url.raw_query_string
    if content_type.lower().startswith("multipart/form-data"):
        # PHP and Rack read a multipart body's fields as a form's (files apart).
        raw, content_type = multipart_fields(raw, content_type), "application/x-www-form-urlencoded"
    fmt = "json" if "json" in content_type.lower() else "form"
    try:
        reading = read_request(raw, content_type=content_type, query=query, fmt=fmt,
                               credentials=(), routing=names)  # fmt: skip
    except UnreadableBody:
        # No framework finds a routing field in this body: the query alone decides.
        reading = read_request(b"", content_type="", query=query, fmt="form", credentials=(),
                               routing=names)  # fmt: skip
    return reading.routing


def multipart_fields(raw: bytes, content_type: str) -> bytes:
    """The plain fields of a multipart/form-data body (files left out), form-encoded.

    Raises:
        AmbiguousBody: the body cannot be parsed as multipart, or repeats its boundary oddly.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    if not message.is_multipart() or message.defects:
        raise AmbiguousBody("the multipart body cannot be read one way")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        if part.get_param("filename", header="content-disposition") is not None:
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        pairs.append((name, value))
    return urlencode(pairs).encode("ascii")
