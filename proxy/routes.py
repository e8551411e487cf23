"""The intercepted surface in one table; everything else is passed through."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web

from proxy.config import Config, ResetConfig
from proxy.flows import health, login, logout, password, reset, reset_confirm, session, signup
from proxy.flows.common import NO_ROUTING, Routing, session_user
from proxy.pacing import FailurePace
from proxy.services import Services

Handler = Callable[[web.Request, Services], Awaitable[web.StreamResponse]]
SESSION_PATH = "/.authshim/session"
PASSTHROUGH = "passthrough"
_SLASHES = re.compile(r"/{2,}")


def normalise_path(path: str) -> str:
    """Fold the spellings a legacy framework treats as one path (``//``, trailing ``/``)."""
    if "//" in path:
        path = _SLASHES.sub("/", path)
    return path.rstrip("/") or "/"


class RouteTable:
    """Maps (method, normalised path) to the flow that answers it."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}

    def add(self, methods: tuple[str, ...], path: str, handler: Handler) -> None:
        for method in methods:
            self._routes[(method, normalise_path(path))] = handler

    def match(self, method: str, path: str) -> Handler | None:
        return self._routes.get((method, normalise_path(path)))

    def resolve(self, method: str, path: str) -> tuple[Handler, str]:
        """The flow for a request and its metrics label: the normalised path of an intercepted
        route, ``passthrough`` for the rest (a bounded set of labels)."""
        normalised = normalise_path(path)
        handler = self._routes.get((method, normalised))
        if handler is None:
            return passthrough, PASSTHROUGH
        return handler, normalised


def build_routes(config: Config) -> RouteTable:
    """Every route authshim answers itself, from the config."""
    table = RouteTable()
    shared = shared_reset(config)
    for route in config.logins:
        # Only the POST is a login; the GET renders the legacy login page (and its CSRF token).
        pace = FailurePace(route.failure_floor)  # one per route: its own failures teach it
        routing = NO_ROUTING
        if shared is not None and normalise_path(shared.request_path) == normalise_path(
            route.path
        ):
            names = tuple(name for name, _ in shared.request_query)
            routing = Routing(names, avoid=(shared.request_query,))
        handler = partial(login.handle, route=route, pace=pace, routing=routing)
        table.add(("POST",), route.path, handler)
    if config.logout.path:
        table.add(("GET", "POST"), config.logout.path, logout.handle)
    table.add(("GET", "HEAD"), SESSION_PATH, session.handle)
    table.add(("GET", "HEAD"), health.HEALTH_PATH, health.handle)
    _add_account_routes(table, config)
    if (cfg := shared) is not None:
        # Added last, over the path's other route (WordPress's wp-login.php is also the login).
        other = table.match("POST", cfg.request_path) or passthrough
        here = normalise_path(cfg.request_path)
        # SECURITY: the login's password field in a reset body means the legacy app may judge
        # a password there (its own routing may read the body): refused by the reset flow.
        foreign = tuple(
            r.password for r in config.logins
            if normalise_path(r.path) == here and r.password != cfg.email
        )  # fmt: skip
        names = tuple(name for name, _ in cfg.request_query)
        routing = Routing(names, want=cfg.request_query, foreign=foreign)
        ours = partial(reset.handle, cfg=cfg, routing=routing)
        table.add(("POST",), cfg.request_path, by_query(cfg.request_query, ours, other))
    return table


def shared_reset(config: Config) -> ResetConfig | None:
    """The reset route that shares its path with another, told apart by its query, if any."""
    cfg = config.reset
    return cfg if cfg is not None and cfg.request_query else None


def by_query(wanted: tuple[tuple[str, str], ...], handler: Handler, other: Handler) -> Handler:
    """``handler`` for a request whose query has each ``name=value`` of ``wanted`` (and no
    other value of that name), ``other`` for the rest."""

    async def route(request: web.Request, svc: Services) -> web.StreamResponse:
        query = request.query
        held = all(set(query.getall(name, ())) == {value} for name, value in wanted)
        return await (handler if held else other)(request, svc)

    return route


def _add_account_routes(table: RouteTable, config: Config) -> None:
    """Reset, sign-up and password change, each only when its section is configured."""
    if (cfg := config.reset) is not None:
        view = reset_confirm.ResetPage.load(config)
        if not cfg.request_query:  # else added last, by build_routes
            table.add(("POST",), cfg.request_path, partial(reset.handle, cfg=cfg))
        table.add(("GET", "HEAD"), reset_confirm.PAGE_PATH, partial(reset_confirm.page, view=view))
        confirm = partial(reset_confirm.confirm, cfg=cfg, view=view)
        table.add(("POST",), reset_confirm.PAGE_PATH, confirm)
        if cfg.confirm_path:
            legacy = partial(reset_confirm.legacy_confirm, view=view)
            table.add(("GET", "HEAD"), cfg.confirm_path, legacy)
    if config.signup is not None:
        table.add(("POST",), config.signup.path, partial(signup.handle, cfg=config.signup))
    if (change := config.password_change) is not None:
        table.add(("POST",), change.path, partial(password.handle, cfg=change))


async def passthrough(request: web.Request, svc: Services) -> web.StreamResponse:
    """Forward a request that is not intercepted, with the session user's identity."""
    # A store failure sends the request on without an identity.
    user = await session_user(request, svc)
    return await svc.forwarder.forward(request, identity=svc.identity(user))
