"""A failed login's answer: the legacy app's own error page, where it can give one.

A migrated user's wrong password is judged by authshim; left to the configured answer it would
look unlike the legacy app's error page that everyone else gets (another status, no fresh CSRF
token, another body), and so tell who has migrated. With ``failure.from_legacy`` authshim asks
the legacy app for that page: the same login, re-encoded, with a random password.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from proxy import log
from proxy.answers import render
from proxy.config import LoginRoute
from proxy.errors import UpstreamError
from proxy.flows.common import put_pointer
from proxy.legacy import judge
from proxy.reading import Reading
from proxy.services import Services


async def failure_answer(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    reading: Reading,
    target: str,
    hold: Callable[[], Awaitable[None]],
) -> web.StreamResponse:
    """The answer to a wrong password authshim judged: the legacy app's refusal of the same
    login with a random password, else (cut-over, the legacy app down) the configured one.
    ``hold`` (the failure pace) runs before the legacy app's answer is relayed."""
    if not route.failure.from_legacy or svc.cutover:
        return render(route.failure)
    body = with_value(reading, route.format, route.password, secrets.token_urlsafe(32))
    try:
        async with svc.forwarder.exchange(request, body=body, target=target) as answer:
            if judge(answer, route.success):
                # SECURITY: never relay an acceptance: its cookies would log the client in.
                svc.counters.add("login.failure_page_accepted")
                log.event("login.failure_page_accepted", route=route.path)
                return render(route.failure)
            await hold()
            return await svc.forwarder.respond(request, answer)
    except UpstreamError:
        svc.counters.add("login.failure_page_unavailable")
        return render(route.failure)


def with_value(reading: Reading, fmt: str, name: str, value: str) -> bytes:
    """The body authshim read, re-encoded, with the field ``name`` (a form name, a JSON key or
    a pointer) set to ``value``; every other field as it was, in its order."""
    if fmt == "json":
        pointer = name if name.startswith("/") else "/" + name.replace("~", "~0").replace("/", "~1")
        doc = put_pointer(reading.fields, pointer, value)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    pairs = parse_qsl(reading.body.decode("ascii"), keep_blank_values=True)
    return urlencode([(key, value if key == name else old) for key, old in pairs]).encode()
