"""The intercepted surface in one table; everything else is passed through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web

from proxy import log
from proxy.answers import problem
from proxy.config import Config, ResetConfig
from proxy.errors import BadRequestBody
from proxy.flows import (
    health,
    login,
    logout,
    must_change,
    password,
    reset,
    reset_confirm,
    session,
    signup,
    steps,
)  # fmt: skip
from proxy.flows.common import NO_ROUTING, Routing, session_user
from proxy.pacing import FailurePace
from proxy.paths import Unfoldable, canonical, may_name, script_prefixes
from proxy.reading import read_request
from proxy.services import Services

Handler = Callable[[web.Request, Services], Awaitable[web.StreamResponse]]
SESSION_PATH = "/.authshim/session"
PASSTHROUGH = "passthrough"
REFUSED = "refused"


class RouteTable:
    """Maps (method, canonical path) to the flow that answers it (``proxy/paths.py``)."""

    def __init__(self, *, case_insensitive: bool = False) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}
        self._credentials: dict[str, tuple[str, ...]] = {}
        self._case_insensitive = case_insensitive
        self._names: frozenset[str] = frozenset()

    def canonical(self, path: str) -> str:
        """A configured path in the table's spelling."""
        return canonical(path, case_insensitive=self._case_insensitive)

    def add(
        self,
        methods: tuple[str, ...],
        path: str,
        handler: Handler,
        *,
        credentials: tuple[str, ...] = (),
    ) -> None:
        """Route ``methods`` on ``path`` to ``handler``; ``credentials``: the field names that
        a request to the path must not carry in its query under any other method."""
        key = self.canonical(path)
        for method in methods:
            self._routes[(method, key)] = handler
        if credentials:
            self._credentials[key] = (*self._credentials.get(key, ()), *credentials)
        last = key.rsplit("/", 1)[-1].casefold()
        self._names = self._names | ({last} if last else set())

    def match(self, method: str, path: str) -> Handler | None:
        return self._routes.get((method, self.canonical(path)))

    def resolve(self, request: web.BaseRequest) -> tuple[Handler, str]:
        """The flow for a request and its metrics label: the canonical path of an intercepted
        route, ``passthrough`` for the rest (a bounded set of labels)."""
        target = request.raw_path
        try:
            key = canonical(target, case_insensitive=self._case_insensitive)
        except Unfoldable as exc:
            if may_name(target, self._names):
                # SECURITY: a spelling no two servers fold alike, of what may be a login path.
                return partial(refuse, reason=str(exc)), REFUSED
            return passthrough, PASSTHROUGH
        handler = self._routes.get((request.method, key))
        if handler is not None:
            return handler, key
        for prefix in script_prefixes(key):  # /wp-login.php/x runs wp-login.php
            if (request.method, prefix) in self._routes or prefix in self._credentials:
                key = prefix
                handler = self._routes.get((request.method, prefix))
                if handler is not None:
                    return handler, key
                break
        if key in self._credentials:
            handler = self._other_method(request, key)
            return handler, PASSTHROUGH if handler is passthrough else REFUSED
        return passthrough, PASSTHROUGH

    def _other_method(self, request: web.BaseRequest, key: str) -> Handler:
        """A request to a login path under a method the route does not take: passed through
        (the GET renders the login page), unless it could carry a credential there."""
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        body = request.method not in ("GET", "HEAD", "OPTIONS") and (
            bool(request.content_length) or chunked
        )
        if body:
            # SECURITY: Express and Rails read a PUT or PATCH body as readily as a POST's.
            return partial(refuse, reason=f"{request.method} with a body on a login path")
        query = request.rel_url.raw_query_string
        if query:
            try:
                read_request(b"", content_type="", query=query, fmt="form",
                             credentials=self._credentials[key])  # fmt: skip
            except BadRequestBody as exc:
                # SECURITY: PHP's $_REQUEST (and many a legacy login) takes GET credentials.
                return partial(refuse, reason=str(exc))
        return passthrough


async def refuse(request: web.Request, svc: Services, reason: str) -> web.StreamResponse:
    """400 for a request to an intercepted path that authshim will not read one way."""
    svc.counters.add("reading.refused")
    log.event("reading.refused", route=request.method, reason=reason)
    return problem(400, reason)


def build_routes(config: Config) -> RouteTable:
    """Every route authshim answers itself, from the config."""
    table = RouteTable(case_insensitive=config.upstream.case_insensitive_paths)
    shared = shared_reset(config)
    for route in config.logins:
        # Only the POST is a login; the GET renders the legacy login page (and its CSRF token).
        pace = FailurePace(route.failure_floor)  # one per route: its own failures teach it
        routing = NO_ROUTING
        if shared is not None and table.canonical(shared.request_path) == table.canonical(
            route.path
        ):
            names = tuple(name for name, _ in shared.request_query)
            routing = Routing(names, avoid=(shared.request_query,))
        handler = partial(login.handle, route=route, pace=pace, routing=routing)
        table.add(("POST",), route.path, handler, credentials=(route.identifier, route.password))
        if not route.second_factor:  # a second factor's steps pass through: nothing to finish
            for path in route.step_paths:
                table.add(("POST",), path, partial(steps.handle, route=route))
    if config.logout.path:
        table.add(("GET", "POST"), config.logout.path, logout.handle)
    table.add(("GET", "HEAD"), SESSION_PATH, session.handle)
    table.add(("GET", "HEAD"), health.HEALTH_PATH, health.handle)
    table.add(("POST",), must_change.PAGE_PATH, must_change.handle)  # issue 16
    _add_account_routes(table, config)
    if (cfg := shared) is not None:
        # Added last, over the path's other route (WordPress's wp-login.php is also the login).
        other = table.match("POST", cfg.request_path) or passthrough
        here = table.canonical(cfg.request_path)
        # SECURITY: the login's password field in a reset body means the legacy app may judge
        # a password there (its own routing may read the body): refused by the reset flow.
        foreign = tuple(
            r.password for r in config.logins
            if table.canonical(r.path) == here and r.password != cfg.email
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
