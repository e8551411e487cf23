"""``create_app`` wires everything for one process; handlers only read ``app[SERVICES]``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from proxy.admin.metrics import METRICS, Metrics
from proxy.config import Config
from proxy.flows import reset
from proxy.forward import Forwarder, create_client_session
from proxy.forward_auth.answer import USER_ID_HEADER
from proxy.guards import http09_refusal
from proxy.headers import identity_names
from proxy.known import KnownIdentifiers, KnownLoader
from proxy.legacy_db import Source, create_source
from proxy.legacy_db.judge import DatabaseJudge
from proxy.legacy_db.lookup import build_lookup
from proxy.limits import Limiter
from proxy.lookup import Lookup
from proxy.mail import Mailer, create_transport
from proxy.modes import ModeWatcher
from proxy.readiness import LoginActivity, readiness_key
from proxy.resets import LEASE_MARGIN, ResetQueue
from proxy.routes import RouteTable, build_routes
from proxy.rules.build import create_rules, rule_headers
from proxy.rules.weak import WeakPasswords
from proxy.services import Services
from proxy.sessions import Sessions
from proxy.stats import Counters
from proxy.writebehind import WriteBehind
from store.base import Store
from store.factory import create_store
from store.hashes import Hashes
from store.passwords import HashParams, PasswordPool

SERVICES = web.AppKey("services", Services)
ROUTES = web.AppKey("routes", RouteTable)


def create_password_pool(config: Config) -> PasswordPool:
    """The bounded argon2id pool at the configured parameters, which also verifies imported
    legacy hashes (with the operator's recipes)."""
    p = config.passwords
    params = HashParams(time_cost=p.time_cost, memory_cost=p.memory_cost, parallelism=p.parallelism)
    legacy = Hashes(config.recipes)
    return PasswordPool(params, workers=p.workers, queue_limit=p.queue_limit, legacy=legacy)


def create_app(
    config: Config, *, store: Store | None = None, passwords: PasswordPool | None = None
) -> web.Application:
    """The proxy application; a given store or pool is used as is and left open."""
    server = config.server
    # SECURITY: llhttp refuses longer request lines, header lines or more headers with 400.
    limits = {
        "max_line_size": server.max_line_size,
        "max_field_size": server.max_field_size,
        "max_headers": server.max_headers,
    }
    # No middlewares: _dispatch does the little every request needs, once.
    app = web.Application(handler_args=limits)
    app[ROUTES] = build_routes(config)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(lambda app: _services(app, config, store, passwords))
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def create_lookup(
    config: Config,
    client: aiohttp.ClientSession,
    counters: Counters,
    legacy_db: Source | None = None,
) -> Lookup | None:
    """The legacy look-up on the app's one client session, when ``[lookup]`` is configured;
    over ``legacy_db`` when ``[lookup] source = "database"``."""
    return build_lookup(config, client, counters, legacy_db)


def create_mailer(config: Config, store: Store, counters: Counters) -> Mailer | None:
    """The outbox and its worker, when ``[mail]`` is configured."""
    if config.mail is None:
        return None
    renderers = dict([reset.mail_renderer(config)]) if config.reset is not None else {}
    return Mailer(config.mail, store, create_transport(config.mail), renderers, counters)


def create_reset_queue(config: Config, store: Store) -> ResetQueue | None:
    """The queue of reset requests and its worker, when ``[reset]`` is configured."""
    if config.reset is None or config.mail is None:
        return None
    lookup_timeout = config.lookup.timeout if config.lookup is not None else 0.0
    return ResetQueue(store, lease=lookup_timeout + LEASE_MARGIN, poll=config.mail.poll)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    """Every request: refused if it is not HTTP/1.x, else answered by its flow (or passed
    through); timed and counted by route (proxy/admin/metrics.py)."""
    app = request.app
    handler, label = app[ROUTES].resolve(request)
    metrics = app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = http09_refusal(request) or await handler(request, app[SERVICES])
        status = response.status
        metrics.answered(response)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.observe(label, status, time.perf_counter() - started)


async def _services(
    app: web.Application, config: Config, store: Store | None, passwords: PasswordPool | None
) -> AsyncIterator[None]:
    own_store = store is None
    if store is None:
        store = create_store(
            config.store.url, pool_min=config.store.pool_min, pool_max=config.store.pool_max
        )
        await store.open()
    # Usernames folded as the legacy app folds them; refused on a store keyed by another rule.
    try:
        await store.use_username_case(config.migration.username_case)
    except BaseException:
        if own_store:
            await store.close()
        raise
    pool = passwords or create_password_pool(config)
    client = create_client_session(config.upstream)
    modes = ModeWatcher(store, config.migration.mode, config.migration.mode_poll)
    await modes.refresh()
    await modes.listen()  # PostgreSQL: mode switches arrive at once; the poll stays
    known = KnownIdentifiers(config.migration.username_case)
    counters = Counters(store)
    forwarder = Forwarder(
        client,
        config.upstream,
        # SECURITY: authshim's own user-id header is never believed from a client either.
        identity_strip=identity_names(
            [USER_ID_HEADER, *(name for name, _ in config.identity), *rule_headers(config.rules)]
        ),
        trusted_proxies=config.server.trusted_proxies,
        public_url=config.server.public_url,
    )
    legacy_source = create_source(config.legacy_db)
    app[SERVICES] = Services(
        config=config,
        store=store,
        passwords=pool,
        forwarder=forwarder,
        sessions=Sessions(config.session, store),
        counters=counters,
        modes=modes,
        login_records=(records := WriteBehind("login.records", store.record_logins)),
        known=known,
        limits=(
            limits := Limiter(
                store,
                config.limits,
                config.session.secret.value,
                username_case=config.migration.username_case,
            )
        ),
        login_activity=(
            activity := LoginActivity(
                readiness_key(config.session.secret.value),
                keep_days=config.admin.readiness_days,
                username_case=config.migration.username_case,
            )
        ),
        lookup=create_lookup(config, client, counters, legacy_source),
        mailer=(mailer := create_mailer(config, store, counters)),
        resets=(resets := create_reset_queue(config, store)),
        rules=create_rules(config, client, counters),  # webhooks share the pooled session
        weak=WeakPasswords(config.capture_policy),
        db_judge=None if legacy_source is None else DatabaseJudge(
            legacy_source, config.profile, pool, config.migration.username_case
        ),
    )
    tasks = [asyncio.create_task(modes.run()), asyncio.create_task(counters.run())]
    tasks.append(asyncio.create_task(limits.run()))  # purges finished limit counters
    # Bookkeeping written behind the answers (proxy/writebehind.py): login counts, settlements.
    tasks += [asyncio.create_task(w.run()) for w in (records, limits.settlements)]
    tasks.append(asyncio.create_task(activity.run(store)))  # logins for the readiness figure
    app[METRICS].counters = counters
    # Who has migrated, so that logins fail safe while the store is down (proxy/known.py).
    tasks.append(asyncio.create_task(KnownLoader(store, known, config.migration.mode_poll).run()))
    if mailer is not None:
        tasks.append(asyncio.create_task(mailer.run()))  # the outbox worker
    if resets is not None and config.reset is not None:
        svc, reset_config = app[SERVICES], config.reset
        # The reset-request worker: tokens and mail for the requests queued (proxy/resets.py).
        tasks.append(asyncio.create_task(resets.run(lambda r: reset.process(svc, reset_config, r))))
    try:
        yield
    finally:
        await app[SERVICES].background.close()  # profile refreshes
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await forwarder.close()
        await client.close()
        if legacy_source is not None:
            await legacy_source.close()
        if passwords is None:
            pool.close()
        if own_store:
            await store.close()
