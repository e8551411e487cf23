"""What every admin handler shares: the app keys, the proxy's services, the JSON error."""

from __future__ import annotations

from aiohttp import web

from proxy.app import SERVICES
from proxy.config import Config
from proxy.services import Services

PROXY_APP = web.AppKey("proxy_app", web.Application)
CONFIG = web.AppKey("config", Config)


def services(request: web.Request) -> Services:
    """The proxy process's services (store, counters, password pool, modes)."""
    return request.app[PROXY_APP][SERVICES]


def error(status: int, code: str, message: str, **extra: object) -> web.Response:
    """A JSON error answer: ``{"error": code, "message": message, ...}``."""
    return web.json_response({"error": code, "message": message, **extra}, status=status)
