"""The intercepted surface in one table; everything else is passed through."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web

from proxy.config import Config
from proxy.flows import login, logout, session
from proxy.services import Services
from store.errors import StoreError

Handler = Callable[[web.Request, Services], Awaitable[web.StreamResponse]]
SESSION_PATH = "/.authshim/session"
_SLASHES = re.compile(r"/{2,}")


def normalise_path(path: str) -> str:
    """Fold the spellings a legacy framework treats as one path (``//``, trailing ``/``)."""
    return _SLASHES.sub("/", path).rstrip("/") or "/"


class RouteTable:
    """Maps (method, normalised path) to the flow that answers it."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}

    def add(self, methods: tuple[str, ...], path: str, handler: Handler) -> None:
        for method in methods:
            self._routes[(method, normalise_path(path))] = handler

    def match(self, method: str, path: str) -> Handler | None:
        return self._routes.get((method, normalise_path(path)))


def build_routes(config: Config) -> RouteTable:
    """Every route authshim answers itself, from the config."""
    table = RouteTable()
    for route in config.logins:
        # Only the POST is a login; the GET renders the legacy login page (and its CSRF token).
        table.add(("POST",), route.path, partial(login.handle, route=route))
    if config.logout.path:
        table.add(("GET", "POST"), config.logout.path, logout.handle)
    table.add(("GET", "HEAD"), SESSION_PATH, session.handle)
    return table


async def passthrough(request: web.Request, svc: Services) -> web.StreamResponse:
    """Forward a request that is not intercepted, with the session user's identity."""
    try:
        user = await svc.session_user(dict(request.cookies))
    except StoreError:
        user = None  # the request still goes through, without an identity
    return await svc.forwarder.forward(request, identity=svc.identity(user))
