"""The admin listener: its own aiohttp app on its own port, sharing the proxy's services.

Every request must carry the admin token (``Authorization: Bearer TOKEN``, or HTTP Basic with
the token as password, which is how a browser sends it to the dashboard). State-changing
requests must also come from the admin's own origin: a browser that holds Basic credentials
would otherwise let any site it visits post to the admin API. Before either, the request must
name a host the listener answers for (``proxy/admin/hosts.py``: DNS rebinding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import log
from proxy.admin import api, dashboard
from proxy.admin.common import CONFIG, PROXY_APP, error, services
from proxy.admin.hosts import host_middleware
from proxy.admin.metrics import METRICS, render
from proxy.admin.users import BadQuery
from proxy.config import Config, is_loopback
from proxy.errors import ConfigError

OPENAPI = Path(__file__).with_name("openapi.json")
MAX_BODY = 64 * 1024
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _presented_token(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests without the admin token, and cross-site state changes."""
    token = request.app[CONFIG].admin.token
    if token is not None:
        presented = _presented_token(request)
        # SECURITY: digests of equal length compared in constant time: no timing, no length.
        if presented is None or not hmac.compare_digest(_digest(presented), _digest(token.value)):
            challenge = 'Bearer realm="authshim admin"'
            if request.path == "/":  # let a browser ask for the token as a Basic password
                challenge = 'Basic realm="authshim admin", charset="UTF-8"'
            response = error(401, "unauthorized", "a valid admin token is required")
            response.headers["WWW-Authenticate"] = challenge
            return response
    if request.method not in _SAFE_METHODS:
        origin = request.headers.get("Origin")
        # SECURITY: a browser's cached Basic credentials must not let another site write here.
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none") or (
            origin is not None and origin != f"{request.scheme}://{request.host}"
        ):
            return error(403, "forbidden", "cross-site requests may not change anything")
    return await handler(request)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bad input is a 400 with a JSON message; aiohttp's own errors are JSON too."""
    try:
        return await handler(request)
    except BadQuery as exc:
        return error(400, "bad_request", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error(exc.status, code, exc.reason)


async def _metrics(request: web.Request) -> web.Response:
    svc = services(request)
    by_source = await svc.store.count_by_source()
    active, migrated = await svc.store.login_readiness(
        since_day=api.readiness_since(request.app[CONFIG])
    )
    text = render(
        request.app[PROXY_APP][METRICS],
        queue_depth=svc.passwords.depth,
        users_by_source=by_source,
        events=dict(svc.counters.totals),
        mode=svc.modes.current,
        readiness=migrated / active if active else None,
    )
    return web.Response(
        body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


async def _openapi(request: web.Request) -> web.FileResponse:
    return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})


def create_admin_app(config: Config, proxy_app: web.Application) -> web.Application:
    """The admin app; it reads ``proxy_app[SERVICES]`` at request time."""
    app = web.Application(
        middlewares=[host_middleware, errors_middleware, auth_middleware],
        client_max_size=MAX_BODY,
    )
    app[PROXY_APP] = proxy_app
    app[CONFIG] = config
    api.add_routes(app.router)
    dashboard.add_routes(app.router)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/admin/openapi.json", _openapi)
    return app


async def run_admin_site(proxy_app: web.Application, config: Config) -> web.AppRunner:
    """Start the admin listener beside a set-up proxy app; ``cleanup()`` the runner to stop.

    Raises:
        ConfigError: no token and an address other hosts can reach.
    """
    admin = config.admin
    if admin.token is None and not is_loopback(admin.host):
        # SECURITY: load_config refuses this too; a hand-built Config must not slip through.
        raise ConfigError([f"admin.token: is required to listen on {admin.host}"])
    runner = web.AppRunner(create_admin_app(config, proxy_app), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, admin.host, admin.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    if admin.token is None:
        log.event("admin.open", listen=f"{admin.host}:{admin.port}", note="no admin.token set")
    log.event("admin.listening", listen=f"{admin.host}:{admin.port}")
    return runner
