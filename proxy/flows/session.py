"""``GET /.authshim/session``: forward-auth on the main listener, for nginx auth_request,
HAProxy, Traefik or Envoy; ``proxy/forward_auth/answer.py`` says what it answers and how long
it may be cached. ``session.forward_auth_listen`` gives the same answer far cheaper on a port
of its own (``proxy/forward_auth/listener.py``)."""

from __future__ import annotations

from aiohttp import web

from proxy.forward_auth.answer import check
from proxy.services import Services


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """200 with the identity headers for a valid session, else 401; both cacheable briefly."""
    answer = await check(svc, request.cookies.get(svc.config.session.cookie))
    return web.Response(status=answer.status, headers=answer.headers, body=answer.body or None)
