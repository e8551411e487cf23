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
import hashlib
import os
import socket
import stat
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

from proxy.config import Config
from proxy.errors import ListenError


@contextmanager
def claimed(config: Config) -> Iterator[None]:
    """Hold the main (admin, forward-auth) listen addresses for this process and its workers.

    Raises:
        ListenError: another authshim serves an address, or something else listens on it.
    """
    addresses = [("server.listen", config.server.host, config.server.port)]
    if config.admin.enabled:
        addresses.append(("admin.listen", config.admin.host, config.admin.port))
    socket_path = None
    if (forward_auth := config.session.forward_auth_listen) is not None:
        if forward_auth.path is None:
            addresses.append(("session.forward_auth_listen", forward_auth.host, forward_auth.port))
        else:
            socket_path = forward_auth.path
    with ExitStack() as held:
        for key, host, port in addresses:
            if port != 0:  # port 0 is a new random port each time: nothing to collide with
                held.enter_context(_lock(key, host, port))
        if socket_path is not None:
            held.enter_context(_lock("session.forward_auth_listen", "unix", socket_path))
            check_socket_free("session.forward_auth_listen", socket_path)
        check_free((key, host, port) for key, host, port in addresses)
        yield


def check_socket_free(what: str, path: str) -> None:
    """Raise ``ListenError`` when something answers on the Unix socket ``path``, or the path
    is a file that is not a socket (never removed in its place)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ListenError(f"{what}: cannot use unix:{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{what}: unix:{path} exists and is not a socket; remove it first")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return  # a socket file left by a process that ended: replaced when bound
    raise ListenError(f"{what}: something already listens on unix:{path}")


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
def _lock(what: str, host: str, port: int | str) -> Iterator[None]:
    """``port`` is a Unix socket's path where ``host`` is ``unix``."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address = f"unix:{port}" if host == "unix" else f"{host}:{port}"
    # An abstract socket's name holds 107 bytes: a long socket path goes by its digest.
    key = address if len(address) < 80 else hashlib.sha256(address.encode()).hexdigest()
    try:
        lock.bind(f"\0authshim-listen:{key}")
    except OSError as exc:
        lock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ListenError(
            f"{what}: another authshim already serves {address}; stop it first,"
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
