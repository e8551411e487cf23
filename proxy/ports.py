"""Before serving: refuse a listen address that another authshim, or anything else, holds.

Workers share their port with SO_REUSEPORT, which the kernel grants to any process of the same
user that asks for it too: a second ``authshim serve`` (a second deployment, an old one left
running) would start without a word and take half the connections. So before binding,
``claimed`` takes a per-address lock (an abstract Unix socket, released by the kernel when the
last process holding it ends, and private to the network namespace like the port itself) and
test-binds each address without SO_REUSEPORT, which fails while anything listens there.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

from proxy.config import Config
from proxy.errors import ListenError


@contextmanager
def claimed(config: Config) -> Iterator[None]:
    """Hold the main (and admin) listen addresses for this process and its workers.

    Raises:
        ListenError: another authshim serves an address, or something else listens on it.
    """
    addresses = [("server.listen", config.server.host, config.server.port)]
    if config.admin.enabled:
        addresses.append(("admin.listen", config.admin.host, config.admin.port))
    with ExitStack() as held:
        for key, host, port in addresses:
            if port != 0:  # port 0 is a new random port each time: nothing to collide with
                held.enter_context(_lock(key, host, port))
        check_free((key, host, port) for key, host, port in addresses)
        yield


def check_free(addresses: Iterable[tuple[str, str, int]]) -> None:
    """Raise ``ListenError`` unless each ``(what, host, port)`` could be bound now."""
    for what, host, port in addresses:
        if port == 0:
            continue
        try:
            infos = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise ListenError(f"{what}: cannot resolve {host!r}: {exc.strerror}") from None
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as probe:
                # As asyncio binds: TIME_WAIT leftovers of a stopped server are no obstacle.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    raise ListenError(_why(what, host, port, exc)) from None


@contextmanager
def _lock(what: str, host: str, port: int) -> Iterator[None]:
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0authshim-listen:{host}:{port}")
    except OSError as exc:
        lock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ListenError(
            f"{what}: another authshim already serves {host}:{port}; stop it first,"
            " or give this one another address"
        ) from None
    try:
        yield
    finally:
        lock.close()


def _why(what: str, host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"{what}: {host}:{port} is already in use by another program"
    return f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}"
