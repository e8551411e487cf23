"""``GET /.authshim/health``: for load balancers; cheap, and 200 whenever the process is up.

A database outage does not make it fail: every replica shares the database, so a check that
failed with it would take them all out of rotation and turn a partial outage (migrated users
get 503, everyone else still reaches the legacy app) into a total one. The body says whether
the store answers, for monitoring.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from proxy.services import Services
from store.errors import StoreError

HEALTH_PATH = "/.authshim/health"
STORE_TIMEOUT = 1.0  # a check must answer within a load balancer's timeout (2 s is usual)


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """200 with ``{"status", "store", "mode"}``; the store is asked one indexed read."""
    store = "ok" if await _store_answers(svc) else "unavailable"
    body = {"status": "ok", "store": store, "mode": svc.modes.current}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _store_answers(svc: Services) -> bool:
    try:
        await asyncio.wait_for(svc.store.get_setting("mode"), STORE_TIMEOUT)
    except (StoreError, TimeoutError):
        return False
    return True
