"""``create_app`` wires everything for one process; handlers only read ``app[SERVICES]``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from proxy.config import Config
from proxy.forward import Forwarder, create_client_session
from proxy.headers import identity_names
from proxy.modes import ModeWatcher
from proxy.routes import RouteTable, build_routes, passthrough
from proxy.services import Services
from proxy.sessions import Sessions
from proxy.stats import Counters
from store.base import Store
from store.factory import create_store
from store.passwords import HashParams, PasswordPool

SERVICES = web.AppKey("services", Services)
ROUTES = web.AppKey("routes", RouteTable)


def create_password_pool(config: Config) -> PasswordPool:
    """The bounded argon2id pool at the configured parameters."""
    p = config.passwords
    params = HashParams(time_cost=p.time_cost, memory_cost=p.memory_cost, parallelism=p.parallelism)
    return PasswordPool(params, workers=p.workers, queue_limit=p.queue_limit)


def create_app(
    config: Config, *, store: Store | None = None, passwords: PasswordPool | None = None
) -> web.Application:
    """The proxy application; a given store or pool is used as is and left open."""
    app = web.Application(handler_args={"max_field_size": 16 * 1024})
    app[ROUTES] = build_routes(config)
    app.cleanup_ctx.append(lambda app: _services(app, config, store, passwords))
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


async def _dispatch(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICES]
    handler = request.app[ROUTES].match(request.method, request.path)
    if handler is None:
        return await passthrough(request, svc)
    return await handler(request, svc)


async def _services(
    app: web.Application, config: Config, store: Store | None, passwords: PasswordPool | None
) -> AsyncIterator[None]:
    own_store = store is None
    if store is None:
        store = create_store(
            config.store.url, pool_min=config.store.pool_min, pool_max=config.store.pool_max
        )
        await store.open()
    pool = passwords or create_password_pool(config)
    client = create_client_session(config.upstream)
    modes = ModeWatcher(store, config.migration.mode, config.migration.mode_poll)
    await modes.refresh()
    counters = Counters(store)
    forwarder = Forwarder(
        client,
        config.upstream,
        identity_strip=identity_names(name for name, _ in config.identity),
        trusted_proxies=config.server.trusted_proxies,
    )
    app[SERVICES] = Services(
        config=config,
        store=store,
        passwords=pool,
        forwarder=forwarder,
        sessions=Sessions(config.session, store),
        counters=counters,
        modes=modes,
    )
    tasks = [asyncio.create_task(modes.run()), asyncio.create_task(counters.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()
        if passwords is None:
            pool.close()
        if own_store:
            await store.close()
