"""The lean forward-auth listener (``session.forward_auth_listen``): the session check alone,
on a port of its own, at a fraction of the main listener's cost per request.

A web server in front (nginx ``auth_request``, HAProxy, Traefik ``forwardAuth``, Envoy
``ext_authz``) asks about every page view of a logged-in user. On the main listener each
question costs aiohttp's request and response objects and its router; here a connection parses
with llhttp (httptools) and writes the answer's bytes itself. Every request, whatever its
method and path (Envoy appends the page's own path), gets the answer that
``GET /.authshim/session`` gives for its session cookie (``answer.py``). A cached user
(``session.cache_ttl``) is answered at once; the others wait for the store. Answers go back in
the order of the requests on a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import cast

import httptools

from proxy import log
from proxy.config import Config
from proxy.forward_auth.answer import Answer, check, check_now, cookie_value
from proxy.services import Services

ROUTE_LABEL = "forward_auth"  # proxy/admin/metrics.py: the listener's row
BACKLOG = 1024
IDLE_TIMEOUT = 75.0  # seconds a connection may sit without a byte, as aiohttp's keep-alive
_SWEEP = 10.0
_MAX_QUEUED = 32  # answers owed on one connection before it stops reading
_MAX_BODY = 64 * 1024  # a body is never needed: read past and dropped, up to this
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 413: "Payload Too Large",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip
# SECURITY: what may not appear in a header line this listener writes (no line injection).
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Observe = Callable[[str, int, float], None]


class _TooLarge(Exception):
    """A request head or body over the listener's limits."""

    def __init__(self, status: int) -> None:
        self.status = status


def encode(answer: Answer, *, head: bool = False, close: bool = False) -> bytes:
    """The HTTP/1.1 response for ``answer`` (without its body for HEAD).

    Raises:
        ValueError: a header name or value that would break the response's lines.
    """
    lines = [f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Unknown')}"]
    for name, value in answer.headers.items():
        if _UNSAFE.search(name) or _UNSAFE.search(value) or ":" in name:
            raise ValueError(f"unsafe header {name!r}")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(answer.body)}")
    if close:
        lines.append("Connection: close")
    text = "\r\n".join(lines) + "\r\n\r\n"
    return text.encode() + (b"" if head else answer.body)


class Checker:
    """The session check behind every connection: the service, the limits, the metrics."""

    def __init__(self, svc: Services, config: Config, observe: Observe) -> None:
        self.svc = svc
        self.cookie = config.session.cookie
        self.max_line = config.server.max_line_size
        self.max_field = config.server.max_field_size
        self.max_headers = config.server.max_headers
        self.observe = observe
        self.connections: set[_Connection] = set()

    def now(self, cookie: str | None, head: bool, close: bool) -> bytes | None:
        """The answer's bytes, or None when it must wait for the store (``later``)."""
        started = time.perf_counter()
        answer = check_now(self.svc, cookie)
        if answer is None:
            return None
        return self._encoded(answer, head, close, started)

    async def later(self, cookie: str | None, head: bool, close: bool) -> bytes:
        started = time.perf_counter()
        return self._encoded(await check(self.svc, cookie), head, close, started)

    def _encoded(self, answer: Answer, head: bool, close: bool, started: float) -> bytes:
        try:
            data = encode(answer, head=head, close=close)
        except ValueError as exc:
            log.event("forward_auth.unsafe_header", error=str(exc))
            answer = Answer(500)
            data = encode(answer, head=head, close=close)
        self.observe(ROUTE_LABEL, answer.status, time.perf_counter() - started)
        return data


class _Connection(asyncio.Protocol):
    """One connection from the web server: requests in, answers out in the same order."""

    def __init__(self, checker: Checker) -> None:
        self._checker = checker
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._owed: deque[bytes | asyncio.Task[bytes]] = deque()
        self._closing = False
        self._paused = False
        self.last_active = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self._cookie: str | None = None
        self._url_size = 0  # llhttp may hand the request line's target over in pieces
        self._headers = 0
        self._body = 0

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._checker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._checker.connections.discard(self)
        self._closing = True
        for owed in self._owed:
            if isinstance(owed, asyncio.Task):
                owed.cancel()
        self._owed.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.last_active = time.monotonic()
        try:
            self._parser.feed_data(data)
        except _TooLarge as exc:
            self._refuse(exc.status)
        except httptools.HttpParserUpgrade:
            self._closing = True  # answered; what follows is another protocol: not read
            self._flush()
        except httptools.HttpParserError as exc:
            too_large = exc.__context__
            self._refuse(too_large.status if isinstance(too_large, _TooLarge) else 400)

    def close(self) -> None:
        """Close at once (idle)."""
        if self._transport is not None:
            self._transport.close()

    def finish(self) -> None:
        """Read no more; close once the answers owed are written (the listener stops)."""
        self._closing = True
        self._flush()

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url_size += len(url)
        if self._url_size > self._checker.max_line:
            raise _TooLarge(431)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > self._checker.max_headers or len(value) > self._checker.max_field:
            raise _TooLarge(431)
        # aiohttp's request.cookies reads the first Cookie header only; so does this.
        if name.lower() == b"cookie" and self._cookie is None:
            self._cookie = cookie_value(value.decode("latin-1"), self._checker.cookie) or ""

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body > _MAX_BODY:
            raise _TooLarge(413)

    def on_message_complete(self) -> None:
        if self._closing:  # pipelined after a request that closes the connection
            return
        head = self._parser.get_method() == b"HEAD"
        close = not self._parser.should_keep_alive()
        cookie = self._cookie or None
        data = self._checker.now(cookie, head, close)
        owed: bytes | asyncio.Task[bytes]
        if data is not None:
            owed = data
        else:
            owed = asyncio.get_running_loop().create_task(self._checker.later(cookie, head, close))
            owed.add_done_callback(lambda _: self._flush())
        self._owed.append(owed)
        if close:
            self._closing = True  # nothing after this request is read
        self._flush()
        if len(self._owed) >= _MAX_QUEUED and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    # --- answers ---

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        while self._owed:
            owed = self._owed[0]
            if isinstance(owed, asyncio.Task):
                if not owed.done():
                    break
                if owed.cancelled() or owed.exception() is not None:
                    failure = "cancelled" if owed.cancelled() else repr(owed.exception())
                    log.event("forward_auth.failed", error=failure)
                    transport.write(encode(Answer(500), close=True))
                    transport.close()
                    return
                owed = owed.result()
            self._owed.popleft()
            transport.write(owed)
        if self._closing and not self._owed:
            transport.close()
        elif self._paused and len(self._owed) < _MAX_QUEUED // 2:
            self._paused = False
            transport.resume_reading()

    def _refuse(self, status: int) -> None:
        """Answer a request that cannot be read, after what is owed, and close."""
        if self._closing:
            return
        self._closing = True
        self._owed.append(encode(Answer(status), close=True))
        self._flush()


class Listener:
    """The listening socket(s) and their connections; ``stop()`` closes them all."""

    def __init__(
        self, server: asyncio.Server, checker: Checker, owned: contextlib.ExitStack
    ) -> None:
        self._server = server
        self._checker = checker
        self._owned = owned  # a Unix socket ``start`` bound itself, removed by ``stop``
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    @property
    def port(self) -> int:
        """The TCP port listened on (0 on a Unix socket)."""
        name = self._server.sockets[0].getsockname()
        return name[1] if isinstance(name, tuple) else 0

    async def _sweep(self) -> None:
        """Close connections that have sent nothing for ``IDLE_TIMEOUT``."""
        while True:
            await asyncio.sleep(_SWEEP)
            cutoff = time.monotonic() - IDLE_TIMEOUT
            for conn in [c for c in self._checker.connections if c.last_active < cutoff]:
                conn.close()

    async def stop(self) -> None:
        self._sweeper.cancel()
        self._server.close()
        for conn in list(self._checker.connections):
            conn.finish()
        await self._server.wait_closed()
        self._owned.close()


@contextlib.contextmanager
def unix_socket(path: str) -> Iterator[socket.socket]:
    """The listener's Unix socket, bound before any worker starts (SO_REUSEPORT cannot share
    a path: the forked workers inherit this one) and removed when serving ends. The caller has
    checked that nothing listens there (``proxy/ports.py``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket file left by an authshim that ended
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # Readable by the web server's user: the answers tell no more than the main
        # listener's public GET /.authshim/session tells anyone holding the same cookie.
        os.chmod(path, 0o666)  # noqa: S103
        sock.listen(BACKLOG)
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


async def start(
    svc: Services,
    config: Config,
    observe: Observe,
    *,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
) -> Listener:
    """Listen on ``session.forward_auth_listen``: its TCP address, or its Unix socket (``sock``
    from ``unix_socket`` when the workers share it, else bound here).

    Raises:
        OSError: the address cannot be bound.
    """
    address = config.session.forward_auth_listen
    assert address is not None
    checker = Checker(svc, config, observe)
    loop = asyncio.get_running_loop()
    owned = contextlib.ExitStack()
    try:
        if sock is None and address.path is not None:
            sock = owned.enter_context(unix_socket(address.path))
        if sock is not None:
            server = await loop.create_unix_server(lambda: _Connection(checker), sock=sock)
        else:
            server = await loop.create_server(
                lambda: _Connection(checker), address.host, address.port,
                reuse_port=reuse_port or None, backlog=BACKLOG,
            )  # fmt: skip
    except BaseException:
        owned.close()
        raise
    listening = [str(address)] if sock is not None else [
        "{}:{}".format(*s.getsockname()[:2]) for s in server.sockets
    ]  # fmt: skip
    log.event("forward_auth.listening", listen=", ".join(listening))
    return Listener(server, checker, owned)
