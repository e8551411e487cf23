"""``GET /.authshim/session``: forward-auth for nginx auth_request, Traefik or Envoy."""

from __future__ import annotations

from aiohttp import web

from proxy.answers import problem
from proxy.flows.common import unavailable
from proxy.services import Services
from store.errors import StoreError

USER_ID_HEADER = "X-Authshim-User-Id"


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """200 with the identity headers for a valid session, else 401."""
    try:
        user = await svc.session_user(dict(request.cookies))
    except StoreError:
        return unavailable("the user store is unavailable")
    if user is None:
        return problem(401, "no valid session")
    headers = {USER_ID_HEADER: user.id, **svc.identity(user), "Cache-Control": "no-store"}
    return web.Response(status=200, headers=headers)
