"""Which ``Host`` the admin listener answers: a defence against DNS rebinding.

A page on ``evil.example`` whose DNS name is re-pointed at 127.0.0.1 makes the visitor's
browser talk to the admin listener as a same-origin site, with ``Host: evil.example``. Without
a token that listener is open to anything on the machine, so such a request could read the
export (password hashes) or set a password. It is refused, before any handler runs, unless it
names a loopback host (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or one of
``admin.allowed_hosts``. With a token the token is the defence; ``admin.allowed_hosts``, when
set, still restricts the names.
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.admin.common import CONFIG, error
from proxy.config import AdminConfig

_PORT = re.compile(r"(:[0-9]{0,5})?")


def host_name(authority: str) -> str | None:
    """The host of a ``Host`` value or URL authority, lower case, without port, brackets or a
    final dot; None when it is not one (a user part, junk after the port)."""
    value = authority.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket:
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if not name or not _PORT.fullmatch(rest) or "@" in name:
        return None
    return name.rstrip(".") or None


def is_loopback_name(name: str) -> bool:
    """Whether ``name`` can only mean this machine: ``localhost`` or a loopback address.

    (``*.localhost`` is left out: not every resolver keeps it on this machine.)
    """
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(authority: str | None, config: AdminConfig) -> bool:
    """Whether a request naming ``authority`` may reach the admin handlers."""
    if config.token is not None and not config.allowed_hosts:
        return True
    if authority is None:
        return False  # SECURITY: fail closed; every browser sends a Host
    name = host_name(authority)
    return name is not None and (is_loopback_name(name) or name in config.allowed_hosts)


def _authorities(request: web.BaseRequest) -> list[str | None]:
    """Every authority a request names: its Host header, and an absolute-form target's."""
    named: list[str | None] = [*request.headers.getall("Host", ())] or [None]
    if not request.raw_path.startswith("/"):  # absolute-form: aiohttp reads the host from it
        named.append(request.url.raw_authority or None)
    return named


@web.middleware
async def host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (421) a request naming a host the admin listener does not answer for."""
    config = request.app[CONFIG].admin
    # SECURITY: DNS rebinding; see the module docstring.
    if not all(host_allowed(authority, config) for authority in _authorities(request)):
        return error(
            421,
            "misdirected_request",
            "this admin listener does not answer for that host; see admin.allowed_hosts",
        )
    return await handler(request)
