"""A logout request's story: authshim's session ends for good (not only its cookie: a copied
cookie stops working too), the cookie is cleared, and the legacy logout still runs."""

from __future__ import annotations

from aiohttp import web

from proxy import log
from proxy.flows.common import PRE_READ, session_user
from proxy.services import Services
from proxy.sessions import clear_cookie
from store.errors import StoreError


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """Revoke the session, forward to the legacy logout with the identity, clear the cookie."""
    user = await session_user(request, svc)
    revoked = "none"
    if user is not None:
        try:
            # SECURITY: clearing the cookie only asks the browser; a copy must be refused too.
            await svc.sessions.revoke(request.cookies.get(svc.config.session.cookie))
            revoked = "ok"
        except StoreError as exc:
            # The legacy logout and the cleared cookie still matter; the failure is counted.
            revoked = "store_error"
            svc.counters.add("logout.revoke_failed")
            log.event("logout.revoke_failed", user=user.id, error=type(exc).__name__)
    response = await svc.forwarder.forward(
        request, identity=svc.identity(user), cookies=[clear_cookie(svc.config.session)],
        body=request.get(PRE_READ),  # read already when `when` chose this route
    )
    svc.counters.add("logout")
    log.event("logout", user=user.id if user else None, revoked=revoked, status=response.status)
    return response
