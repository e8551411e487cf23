"""The notification events (``migrated``, ``password_changed``): run after the store write,
in the background, so that a slow receiver never holds the answer; their answers are counted
and otherwise ignored."""

from __future__ import annotations

from aiohttp import web

from proxy.limits import client_ip
from proxy.rules.context import build_context, user_context
from proxy.services import Services
from store.base import User


def notify(
    svc: Services,
    event: str,
    user: User,
    auth: str,
    *,
    request: web.BaseRequest | None = None,
    route: str | None = None,
) -> None:
    """Run ``event``'s rules on ``user`` behind the answer (nothing when none is configured)."""
    engine = svc.rules
    if engine is None or not engine.has(event):
        return
    ip = client_ip(request, svc.config.server.trusted_proxies) if request is not None else None
    context = build_context(
        event, auth, user_context(user), client=ip, route=route or (request.path if request
        else None), mode=svc.modes.current,
    )  # fmt: skip

    async def run() -> None:
        await engine.run(event, context)

    svc.background.spawn(run(), name=f"rules.{event}")
