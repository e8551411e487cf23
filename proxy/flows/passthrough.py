"""A request authshim does not intercept: forwarded with the session user's identity."""

from __future__ import annotations

from aiohttp import web

from proxy.flows.common import PRE_READ, session_user
from proxy.services import Services


async def passthrough(request: web.Request, svc: Services) -> web.StreamResponse:
    """Forward a request that is not intercepted, with the session user's identity (streamed;
    a body read already to choose the route goes as it came)."""
    # A store failure sends the request on without an identity.
    user = await session_user(request, svc)
    body = request.get(PRE_READ)
    return await svc.forwarder.forward(request, identity=svc.identity(user), body=body)
