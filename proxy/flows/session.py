"""``GET /.authshim/session``: forward-auth for nginx auth_request, HAProxy, Traefik or Envoy.

The answer depends on the session cookie alone, so a web server may cache it keyed by that
cookie for ``session.forward_auth_ttl`` seconds (docs/deployment.md): page views of a
logged-in user then cost the web server a cache look-up instead of a round trip to authshim.
A revoked session (logout, password change, admin block) is refused by the web server within
that TTL plus ``session.cache_ttl``.
"""

from __future__ import annotations

from aiohttp import web

from proxy.answers import problem
from proxy.flows.common import unavailable
from proxy.services import Services
from store.errors import StoreError

USER_ID_HEADER = "X-Authshim-User-Id"
NOT_CACHED = {"Cache-Control": "no-store"}


def cache_headers(ttl: float) -> dict[str, str]:
    """Headers that let the operator's own web server, and nothing else, cache an answer."""
    if ttl <= 0:
        return dict(NOT_CACHED)
    seconds = str(int(ttl))
    return {
        # nginx reads X-Accel-Expires first and then ignores Cache-Control, so this one must
        # come first; its cache key is the session cookie (recipes/nginx-forward-auth).
        "X-Accel-Expires": seconds,
        # SECURITY: any other cache (a CDN, a browser that reaches this path) keeps the answer
        # private and per cookie.
        "Cache-Control": f"private, max-age={seconds}",
        "Vary": "Cookie",
    }


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """200 with the identity headers for a valid session, else 401; both cacheable briefly."""
    try:
        user = await svc.session_user(dict(request.cookies))
    except StoreError:
        return unavailable("the user store is unavailable")  # never cached: no-store
    cache = cache_headers(svc.config.session.forward_auth_ttl)
    if user is None:
        answer = problem(401, "no valid session")
        answer.headers.update(cache)
        return answer
    headers = {**cache, USER_ID_HEADER: user.id, **svc.identity(user)}
    return web.Response(status=200, headers=headers)
