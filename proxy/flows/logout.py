"""A logout request's story: authshim's cookie is cleared and the legacy logout still runs."""

from __future__ import annotations

from aiohttp import web

from proxy import log
from proxy.flows.common import session_user
from proxy.services import Services
from proxy.sessions import clear_cookie


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """Forward to the legacy logout with the identity, and clear authshim's session cookie."""
    user = await session_user(request, svc)
    response = await svc.forwarder.forward(
        request, identity=svc.identity(user), cookies=[clear_cookie(svc.config.session)]
    )
    svc.counters.add("logout")
    log.event("logout", user=user.id if user else None, status=response.status)
    return response
