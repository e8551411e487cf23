"""The intercepted surface in one table; everything else is passed through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from aiohttp import web

from proxy import log
from proxy.answers import problem
from proxy.choose import Handler, conditional
from proxy.config import Config, LoginRoute, ResetConfig
from proxy.config.matching import POST, Match
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
from proxy.flows.common import Routing
from proxy.flows.passthrough import passthrough
from proxy.pacing import FailurePace
from proxy.paths import Unfoldable, canonical, may_name, script_prefixes
from proxy.reading import read_request
from proxy.services import Services

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
        self._loose: dict[str, str] = {}  # loose spelling -> the login path it would reach

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
            self._loose[canonical(key, case_insensitive=True)] = key
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
        if self._loose and not self._case_insensitive and self._near_login(key):
            # SECURITY: /API/Login or /login.aspx. is the login on IIS and other Windows
            # servers; on a case-sensitive one it is nothing, so refusing it costs nobody.
            return partial(refuse, reason="another spelling of a login path"), REFUSED
        return passthrough, PASSTHROUGH

    def _near_login(self, key: str) -> bool:
        """Whether a path reaches a login route on a case-insensitive (Windows) server."""
        try:
            loose = canonical(key, case_insensitive=True)
        except Unfoldable:
            return False
        return loose in self._loose or any(p in self._loose for p in script_prefixes(loose))

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


@dataclass(frozen=True, slots=True)
class Entry:
    """One intercepted route before the table is built: its path, which requests on it are its
    (``match``), its flow given the path's routing, and the fields a GET must not carry."""

    path: str
    match: Match
    make: Callable[[Routing], Handler]
    credentials: tuple[str, ...] = ()
    password: str | None = None  # a login's password field: foreign to the path's other routes


def build_routes(config: Config) -> RouteTable:
    """Every route authshim answers itself, from the config."""
    table = RouteTable(case_insensitive=config.upstream.case_insensitive_paths)
    by_path: dict[str, list[Entry]] = {}
    for entry in _entries(config):
        by_path.setdefault(table.canonical(entry.path), []).append(entry)
    for entries in by_path.values():
        _add_path(table, entries)
    table.add(("GET", "HEAD"), SESSION_PATH, session.handle)
    table.add(("GET", "HEAD"), health.HEALTH_PATH, health.handle)
    table.add(("POST",), must_change.PAGE_PATH, must_change.handle)  # rules: must change
    if (cfg := config.reset) is not None:
        view = reset_confirm.ResetPage.load(config)
        table.add(("GET", "HEAD"), reset_confirm.PAGE_PATH, partial(reset_confirm.page, view=view))
        table.add(("POST",), reset_confirm.PAGE_PATH,
                  partial(reset_confirm.confirm, cfg=cfg, view=view))  # fmt: skip
        if cfg.confirm_path:
            legacy = partial(reset_confirm.legacy_confirm, view=view)
            table.add(("GET", "HEAD"), cfg.confirm_path, legacy)
    return table


def _entries(config: Config) -> list[Entry]:
    """The routes that ``methods`` and ``when`` choose among, from every section."""
    entries: list[Entry] = []
    for route in config.logins:
        # Only the POST is a login; the GET renders the legacy login page (and its CSRF token).
        pace = FailurePace(route.failure_floor)  # one per route: its own failures teach it
        entries.append(Entry(
            route.path, route.match,
            partial(_login, route=route, pace=pace),
            credentials=(route.identifier, route.password), password=route.password,
        ))  # fmt: skip
        if not route.second_factor:  # a second factor's steps pass through: nothing to finish
            for path in route.step_paths:
                entries.append(Entry(path, POST, _fixed(partial(steps.handle, route=route))))
    if config.logout.path:
        entries.append(Entry(config.logout.path, config.logout.match, _fixed(logout.handle)))
    if (cfg := config.reset) is not None:
        entries.append(Entry(cfg.request_path, cfg.match, partial(_reset, cfg=cfg)))
    if (sign := config.signup) is not None:
        entries.append(Entry(sign.path, sign.match, _fixed(partial(signup.handle, cfg=sign))))
    if (change := config.password_change) is not None:
        flow = _fixed(partial(password.handle, cfg=change))
        entries.append(Entry(change.path, change.match, flow))
    return entries


def _fixed(handler: Handler) -> Callable[[Routing], Handler]:
    """A flow that needs nothing of its path's routing."""
    return lambda _routing: handler


def _login(routing: Routing, route: LoginRoute, pace: FailurePace) -> Handler:
    return partial(login.handle, route=route, pace=pace, routing=routing)


def _reset(routing: Routing, cfg: ResetConfig) -> Handler:
    return partial(reset.handle, cfg=cfg, routing=routing)


def _add_path(table: RouteTable, entries: list[Entry]) -> None:
    """The routes of one path: each method to its one route, or to a chooser among several or
    among routes with ``when`` (proxy/choose.py)."""
    names = tuple(dict.fromkeys(name for e in entries for name in e.match.names))
    by_method: dict[str, list[tuple[Match, Handler]]] = {}
    for entry in entries:
        others = tuple(e.match for e in entries if e is not entry)
        # SECURITY: a login's password field in another route's body (a reset posted to
        # wp-login.php with pwd in it): the legacy app may judge a password there.
        foreign = tuple(e.password for e in entries if e is not entry and e.password)
        handler = entry.make(Routing(names, entry.match, others, foreign))
        for method in entry.match.methods:
            by_method.setdefault(method, []).append((entry.match, handler))
        table.add((), entry.path, handler, credentials=entry.credentials)
    for method, choices in by_method.items():
        if len(choices) == 1 and not choices[0][0].when:
            table.add((method,), entries[0].path, choices[0][1])
        else:
            table.add((method,), entries[0].path, conditional(choices, names))
