"""The lean HTTP/1.1 client that carries clients' requests to the upstream: one keep-alive pool,
llhttp's parser (httptools), bodies streamed both ways with back-pressure.

aiohttp's client does much more per request than a proxy needs (redirects, cookies, automatic
headers, tracing); on the pass-through path it was most of authshim's CPU per request
(docs/performance.md). authshim's own requests (profile fetches, look-ups) and WebSockets stay
on aiohttp's client (``proxy/forward.py``).

Failures surface as ``TimeoutError`` (connect, pool wait, or ``read_timeout`` without a byte)
and ``UpstreamProtocolError`` (an ``OSError``: refused, reset, broken framing), which the
forwarder turns into 504 and 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
from aiohttp import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy

# An answer's body buffered past HIGH_WATER pauses reading from the upstream until the client
# has taken it down to LOW_WATER: a slow client costs a few buffers, never the whole body.
HIGH_WATER = 128 * 1024
LOW_WATER = 32 * 1024
# Idle keep-alive connections older than this are closed rather than reused (aiohttp's default):
# servers close idle connections too, and a request sent as one closes is lost.
KEEPALIVE = 15.0
# A request that may be sent twice: a reused connection that the upstream closed before
# answering (its keep-alive ran out as we wrote) is retried once on a new connection.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods whose request carries a body by definition: without one, say so (Content-Length: 0).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

Body = bytes | StreamReader | None


class UpstreamProtocolError(ConnectionError):
    """The upstream closed the connection, or broke HTTP/1.1 framing, before its answer ended."""


class UpstreamResponse:
    """One answer: status, reason and headers once ``open`` returns, then the body by ``read``.

    ``release`` hands the connection back to the pool when the answer was read to its end and
    both sides keep the connection alive; otherwise it closes it.
    """

    __slots__ = ("_conn", "_writer", "headers", "method", "reason", "status")

    def __init__(self, conn: _Connection, method: str) -> None:
        self._conn = conn
        self._writer: asyncio.Task[None] | None = None
        self.method = method
        self.status = 0
        self.reason = ""
        self.headers: CIMultiDictProxy[str] = _EMPTY

    @property
    def content(self) -> UpstreamResponse:
        """The body reader (``content.read(n)``, as on aiohttp's ``ClientResponse``)."""
        return self

    def read(self, n: int = -1) -> Coroutine[Any, Any, bytes]:
        """Up to ``n`` bytes of the body (all that is buffered when ``n`` < 0); b"" at its end.

        Raises:
            UpstreamProtocolError: the upstream cut the body short.
            TimeoutError: no byte came for ``read_timeout``.
        """
        return self._conn.read(n)  # the connection's coroutine itself: one frame less to resume

    def whole_body(self) -> bytes | None:
        """The entire body when it has all arrived (a small answer usually comes with its head),
        else None; once taken, ``read`` returns b""."""
        return self._conn.take_whole()

    def release(self) -> None:
        """Back to the pool if the exchange ended cleanly, else closed."""
        writer = self._writer
        sent = writer is None or (writer.done() and not writer.cancelled()
                                  and writer.exception() is None)  # fmt: skip
        if writer is not None and not writer.done():
            writer.cancel()
        self._conn.release(reusable=sent and self.method != "HEAD")

    def close(self) -> None:
        """Close the connection (the answer is abandoned)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._conn.release(reusable=False)


_EMPTY: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class _Connection(asyncio.Protocol):
    """One keep-alive connection: the parser's callbacks fill the current answer's buffer."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # The current answer
        self._active = False
        self._head_done = False
        self._complete = False
        self._keep_alive = False
        self._interim = False  # a 1xx answer before the real one
        self._got_bytes = False
        self._error: BaseException | None = None
        self._status_line = bytearray()
        self._header_list: list[tuple[str, str]] = []
        self._response: UpstreamResponse | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        # Whoever waits for the head, a body chunk or room to write
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self._transport_close()  # bytes nobody asked for: the connection is not ours to trust
            return
        self._got_bytes = True
        self._deadline = self._loop.time() + self._pool.read_timeout
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._complete:  # junk after a whole answer: the answer stands, the connection goes
                self._keep_alive = False
            else:
                self._fail(UpstreamProtocolError(f"the upstream's answer is not valid HTTP: {exc}"))
            self._transport_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._active and not self._complete:
            if self._head_done and exc is None and self._until_eof():
                self._finish(keep_alive=False)  # the body was delimited by the close
            else:
                self._fail(UpstreamProtocolError("the upstream closed the connection mid-answer"))
        self._wake_drain(UpstreamProtocolError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._keep_alive = False  # bytes after the answer: the connection is not reused
        self._status_line.clear()
        self._header_list = []

    def on_status(self, reason: bytes) -> None:
        self._status_line += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # As aiohttp's client decodes them: the bytes come back unchanged when re-encoded.
        self._header_list.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: the real answer follows
            return
        response = self._response
        assert response is not None
        response.status = status
        response.reason = self._status_line.decode("utf-8", "surrogateescape")
        response.headers = CIMultiDictProxy(CIMultiDict(self._header_list))
        self._head_done = True
        if response.method == "HEAD":
            # llhttp does not know the request was a HEAD and would wait for the body that
            # Content-Length announces: the answer ends here, and the connection is not reused.
            self._finish(keep_alive=False)
            return
        self._wake(None)

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if not self._complete:
            self._finish(keep_alive=self._parser.should_keep_alive())

    # -- the exchange ---------------------------------------------------------------------------

    def start(self, method: str) -> UpstreamResponse:
        """Begin an exchange on this (idle) connection."""
        self._active = True
        self._head_done = self._complete = self._keep_alive = self._interim = False
        self._got_bytes = False
        self._error = None
        self._buffer.clear()
        self._buffered = 0
        self._response = UpstreamResponse(self, method)
        self._deadline = self._loop.time() + self._pool.read_timeout
        return self._response

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    @property
    def head_done(self) -> bool:
        return self._head_done

    def write(self, data: bytes) -> None:
        if self._transport is None or self.closed or self._transport.is_closing():
            raise UpstreamProtocolError("the upstream closed the connection")
        self._transport.write(data)
        self._deadline = self._loop.time() + self._pool.read_timeout

    async def drain(self) -> None:
        """Wait while the transport's write buffer is full."""
        if not self._write_paused:
            return
        if self.closed:
            raise UpstreamProtocolError("the upstream closed the connection")
        self._drain = self._loop.create_future()
        await self._drain

    async def read(self, n: int) -> bytes:
        while not self._buffer:
            if self._complete or self._error is not None:
                if self._error is not None:
                    raise self._error
                return b""
            await self.event()
        buffer = self._buffer
        if n < 0 or (len(buffer) == 1 and len(buffer[0]) <= n):
            chunk = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
            buffer.clear()
        else:
            parts, size = [], 0
            while buffer and size < n:
                part = buffer.popleft()
                if size + len(part) > n:
                    buffer.appendleft(part[n - size :])
                    part = part[: n - size]
                parts.append(part)
                size += len(part)
            chunk = b"".join(parts)
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    def take_whole(self) -> bytes | None:
        if not self._complete or self._error is not None:
            return None
        body = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        return body

    def release(self, *, reusable: bool) -> None:
        """End the exchange: the connection goes back to the pool or is closed."""
        if not self._active:
            return
        self._active = False
        self._response = None
        reusable = reusable and self._complete and self._keep_alive and not self.closed
        if not reusable:
            self._transport_close()
        self._pool._released(self, reusable)

    def abort(self, exc: BaseException) -> None:
        """Fail the exchange and close the connection."""
        self._fail(exc)
        self._transport_close()

    # -- plumbing -------------------------------------------------------------------------------

    def _until_eof(self) -> bool:
        """Whether the answer's body runs to the close (no length, not chunked)."""
        response = self._response
        assert response is not None
        headers = response.headers
        return "Content-Length" not in headers and "Transfer-Encoding" not in headers

    def _finish(self, *, keep_alive: bool) -> None:
        self._complete = True
        self._keep_alive = keep_alive
        self._wake(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake(exc)

    def _wake(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _wake_drain(self, exc: BaseException | None) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            if exc is None:
                drain.set_result(None)
            else:
                drain.set_exception(exc)

    def event(self) -> asyncio.Future[None]:
        """A future for the parser's next event (the head, body bytes, the end or a failure),
        failed with ``TimeoutError`` when no byte comes for ``read_timeout``.

        A future, not a coroutine: awaited directly, it saves a frame on every resumption.
        """
        if self._error is not None:
            raise self._error
        if self._timer is not None:  # left armed by a waiter that was cancelled
            self._timer.cancel()
        self._waiter = waiter = self._loop.create_future()
        self._timer = self._loop.call_at(self._deadline, self._expire)
        return waiter

    def _expire(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # its waiter was cancelled
        if self._loop.time() < self._deadline:  # bytes came meanwhile: wait on
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self._waiter = self._timer = None
        waiter.set_exception(
            TimeoutError(f"no byte from the upstream for {self._pool.read_timeout:g} s")
        )

    def _transport_close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class UpstreamPool:
    """Keep-alive connections to one upstream, at most ``size`` open at once.

    ``connect_timeout`` bounds waiting for a free connection plus opening one, so a full pool
    answers ``TimeoutError`` (504) rather than queueing for ever; ``read_timeout`` bounds the
    wait for each byte of the answer.
    """

    def __init__(self, url: str, *, size: int, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or ""
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)
        # The Host header names the upstream itself, as aiohttp's client does.
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if self._tls else None
        self._size = size
        self._in_use = 0  # connections handed out; with the idle ones, never more than size
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._idle: list[_Connection] = []
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._closed = False

    async def request(
        self, method: str, target: str, headers: CIMultiDict[str], body: Body
    ) -> UpstreamResponse:
        """Send the request and return once the answer's head is in; stream the body with
        ``read`` and end with ``release`` or ``close``."""
        head = self._head(method, target, headers, body)
        stream = body if isinstance(body, StreamReader) else None
        if isinstance(body, bytes):
            head += body  # one write for the whole request
        while True:
            conn, reused = await self._acquire()
            response = conn.start(method)
            try:
                conn.write(head)
                if stream is not None:
                    chunked = "Content-Length" not in headers
                    response._writer = asyncio.create_task(_send_body(conn, stream, chunked))
                while not conn.head_done:
                    await conn.event()
                return response
            except UpstreamProtocolError:
                retry = reused and stream is None and not conn.got_bytes and method in _IDEMPOTENT
                response.close()
                if not retry:
                    raise
            except BaseException:
                response.close()
                raise

    async def close(self) -> None:
        """Close the idle connections; those in use close when their answers are released."""
        self._closed = True
        while self._idle:
            self._idle.pop()._transport_close()

    # -- plumbing -------------------------------------------------------------------------------

    def _head(self, method: str, target: str, headers: CIMultiDict[str], body: Body) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if body is None and method in _BODY_METHODS and "Content-Length" not in headers:
            lines.append("Content-Length: 0\r\n")
        elif isinstance(body, StreamReader) and "Content-Length" not in headers:
            lines.append("Transfer-Encoding: chunked\r\n")
        lines.append("\r\n")
        text = "".join(lines)
        # SECURITY: a CR or LF inside a name or value (an identity value from a profile, say)
        # would start a header or a request of its own upstream: every line ends where we say.
        if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
            raise ValueError("a header name or value holds a CR or LF")
        return text.encode("utf-8", "surrogateescape")

    async def _acquire(self) -> tuple[_Connection, bool]:
        """A free connection (reused when one is idle) and whether it was reused."""
        if self._closed:
            raise UpstreamProtocolError("the upstream pool is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        if self._in_use >= self._size:  # the pool is full: wait, within the connect timeout
            await self._wait_for_slot(loop, deadline)  # a released connection's slot passes on
        else:
            self._in_use += 1
        try:
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and now - conn.idle_since < KEEPALIVE:
                    return conn, True
                conn._transport_close()
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self._host, self._port,
                    ssl=self._ssl, server_hostname=self._host if self._tls else None,
                )  # fmt: skip
            return conn, False
        except BaseException:
            self._free_slot()
            raise

    def _released(self, conn: _Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        elif reusable:
            conn._transport_close()  # the pool was closed while it was in use: never left open
        self._free_slot()

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        waiter = loop.create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._free_slot()  # handed a slot just as the wait ended: pass it on
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)

    def _free_slot(self) -> None:
        """A connection was handed back: its slot passes to the next waiter, if any."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_use -= 1


async def _send_body(conn: _Connection, body: StreamReader, chunked: bool) -> None:
    """Stream the client's body upstream as it arrives (re-chunked when it came chunked).

    When the client's body fails (the client went away mid-upload), the exchange fails too:
    the upstream would otherwise wait for the rest until its own timeout.
    """
    try:
        while chunk := await body.readany():
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
    except Exception as exc:
        conn.abort(UpstreamProtocolError(f"the request body could not be sent: {exc!r}"))
