"""Tests for proxy/upstream.py, the keep-alive client between the forwarder and the upstream.

The upstream here is scripted on a raw socket: it writes the exact bytes a test chooses and
records every request it read and on which connection, so keep-alive, framing and failures can
be shown byte for byte. Most tests go through a Forwarder (what a client sees); a few use the
``UpstreamPool`` directly where that is clearer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError
from proxy.forward import Forwarder, create_client_session, upstream_failure
from proxy.headers import identity_names
from proxy.upstream import HIGH_WATER, UpstreamPool, UpstreamProtocolError

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
STRIP = identity_names(["X-Forwarded-User"])


def pattern(n: int) -> bytes:
    """``n`` bytes of every value, so a lost, doubled or misplaced chunk shows."""
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# -- the scripted raw upstream -------------------------------------------------------------------


class Received:
    """One request as it came over the wire: its head, and its body framing and all."""

    def __init__(self, conn: int, nth: int, head: bytes, body: bytes) -> None:
        self.conn = conn  # which connection: 0 is the first the upstream accepted
        self.nth = nth  # its place on that connection
        self.head = head
        self.body = body

    @property
    def method(self) -> str:
        return self.head.split(b" ", 1)[0].decode()

    @property
    def target(self) -> str:
        return self.head.split(b" ", 2)[1].decode()

    def header(self, name: str) -> list[str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        pairs = (line.partition(":") for line in lines if line)
        return [value.strip() for key, _, value in pairs if key.lower() == name.lower()]


# Writes the answer to one request; returns whether to read the next one on that connection.
Script = Callable[["RawUpstream", Received, asyncio.StreamWriter], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """The next request's head and raw body, or None when the peer closed between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lower = head.lower()
    if b"\r\ntransfer-encoding: chunked\r\n" in lower:
        body = b""
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0], 16)
            body += line + await reader.readexactly(size + 2)
            if size == 0:
                return head, body
    length = re.search(rb"\r\ncontent-length: *(\d+)\r\n", lower)
    return head, await reader.readexactly(int(length[1])) if length else b""


def dechunk(raw: bytes) -> bytes:
    """The payload of a chunked body, which must be well framed and end with the last chunk."""
    parts = []
    while True:
        size_line, _, raw = raw.partition(b"\r\n")
        size = int(size_line, 16)
        parts.append(raw[:size])
        assert raw[size : size + 2] == b"\r\n"
        raw = raw[size + 2 :]
        if size == 0:
            assert raw == b""
            return b"".join(parts)


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class RawUpstream:
    """An HTTP/1.1 server on 127.0.0.1 that answers as its script says and records what it got."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.url = ""
        self.received: list[Received] = []
        self.connections = 0  # accepted so far
        self.ended: set[int] = set()  # connections closed, by either side
        self.release = asyncio.Event()  # what scripts that hold an answer wait for
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:  # ends every read the scripts still wait in
            writer.transport.abort()
        async with asyncio.timeout(2):
            await asyncio.gather(*self._tasks)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait (2 s at most) until ``condition``, about what the upstream received or saw
        end, holds."""
        async with asyncio.timeout(2), self._changed:
            await self._changed.wait_for(condition)

    async def _note(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        conn = self.connections
        self.connections += 1
        try:
            for nth in itertools.count():
                request = await read_request(reader)
                if request is None:
                    break
                received = Received(conn, nth, *request)
                self.received.append(received)
                await self._note()
                if not await self.script(self, received, writer):
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the proxy hung up: what the tests are about, not a failure of this server
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.ended.add(conn)
            self._tasks.discard(task)
            self._writers.discard(writer)
            await self._note()


def answering(data: bytes, *, close: bool = False) -> Script:
    """A script that answers every request with ``data``, then closes if ``close``."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(data)
        return not close

    return script


StartUpstream = Callable[[Script], Awaitable[RawUpstream]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[StartUpstream]:
    """Start scripted upstreams; each is stopped (held answers released) after the test."""
    started: list[RawUpstream] = []

    async def start(script: Script) -> RawUpstream:
        up = RawUpstream(script)
        await up.start()
        started.append(up)
        return up

    yield start
    for up in started:
        await up.stop()


# -- the forwarder in front of it ----------------------------------------------------------------

FORWARDER = web.AppKey("forwarder", Forwarder)
Client = TestClient[web.Request, web.Application]
ProxyTo = Callable[..., Awaitable[Client]]


@pytest.fixture
def proxy_to(aiohttp_client: Callable[..., Awaitable[Client]]) -> ProxyTo:
    """A proxy whose POST /login uses exchange + respond (as the login flow does) and whose
    every other route uses forward; short timeouts unless given."""

    async def make(url: str, *, identity: dict[str, str] | None = None, **upstream: Any) -> Client:
        settings: dict[str, Any] = {"connect_timeout": 0.5, "read_timeout": 0.5} | upstream
        config = UpstreamConfig(url=url, **settings)

        async def forwarder(app: web.Application) -> AsyncIterator[None]:
            session = create_client_session(config)
            app[FORWARDER] = Forwarder(session, config, identity_strip=STRIP)
            yield
            await app[FORWARDER].close()
            await session.close()

        async def passthrough(request: web.Request) -> web.StreamResponse:
            return await request.app[FORWARDER].forward(request, identity=identity or {})

        async def login(request: web.Request) -> web.StreamResponse:
            forwarder = request.app[FORWARDER]
            body = await request.read()
            try:
                async with forwarder.exchange(request, body=body) as answer:
                    return await forwarder.respond(request, answer)
            except UpstreamError as exc:
                return upstream_failure(exc)

        app = web.Application()
        app.cleanup_ctx.append(forwarder)
        app.router.add_post("/login", login)
        app.router.add_route("*", "/{tail:.*}", passthrough)
        return await aiohttp_client(app)

    return make


async def fetch(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, bytes | None]:
    """The status and body a client gets; None for a body that was cut off before its end."""
    async with client.request(method, path, **kwargs) as resp:
        try:
            return resp.status, await resp.read()
        except aiohttp.ClientPayloadError:
            return resp.status, None


async def raw_exchange(client: Client, request: bytes) -> bytes:
    """Send ``request`` to the proxy on a connection of its own and return every byte of the
    answer (aiohttp's client would hide interim 1xx answers)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 2)
    finally:
        writer.close()
        await writer.wait_closed()


# -- 1. keep-alive -------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """Sequential requests travel one after another on a single kept-alive connection."""
    up = await raw_upstream(answering(OK))
    client = await proxy_to(up.url)
    for path in ("/a", "/b", "/c", "/d"):
        assert await fetch(client, "GET", path) == (200, b"ok")
    assert [(r.conn, r.nth, r.target) for r in up.received] == [
        (0, 0, "/a"), (0, 1, "/b"), (0, 2, "/c"), (0, 3, "/d"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("status_line", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", True),
    ],
    ids=["1.1 Connection: close", "1.0 plain", "1.0 keep-alive"],
)
async def test_an_answer_ending_keep_alive_is_not_reused(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, status_line: bytes, reused: bool
) -> None:
    """An answer with Connection: close, or HTTP/1.0 without keep-alive, ends its connection
    even when the upstream leaves it open: the proxy closes it and opens a new one."""
    up = await raw_upstream(answering(status_line + b"Content-Length: 2\r\n\r\nok"))
    client = await proxy_to(up.url)
    for _ in range(3):
        assert await fetch(client, "GET", "/") == (200, b"ok")
    if reused:
        assert ([r.conn for r in up.received], up.ended) == ([0, 0, 0], set())
    else:
        assert [r.conn for r in up.received] == [0, 1, 2]
        await up.wait_for(lambda: up.ended == {0, 1, 2})  # closed by the proxy, not left open


async def test_bytes_sent_on_an_idle_connection_are_never_taken_as_an_answer(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """An upstream that writes a stray answer on an idle kept-alive connection: the proxy drops
    that connection, and the next request gets its own answer on a new one."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        if request.conn == 0:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
        return True

    up = await raw_upstream(script)
    client = await proxy_to(up.url)
    assert await fetch(client, "GET", "/a") == (200, b"ok")
    await up.wait_for(lambda: 0 in up.ended)
    assert await fetch(client, "GET", "/b") == (200, b"ok")
    assert [(r.conn, r.target) for r in up.received] == [(0, "/a"), (1, "/b")]


# -- 2. the upstream closing kept-alive connections ----------------------------------------------


async def test_a_connection_closed_by_the_upstream_after_its_answer_is_not_reused(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """An upstream that closes after each answer without saying Connection: close: every
    request, GET or POST, still goes out once, on a fresh connection."""
    up = await raw_upstream(answering(OK, close=True))
    client = await proxy_to(up.url)
    for method in ("GET", "POST", "GET", "POST"):
        await up.wait_for(lambda: len(up.ended) == up.connections)
        await asyncio.sleep(0.01)  # for the proxy to see the close, as after any idle time
        assert await fetch(client, method, "/", data=b"x=1" if method == "POST" else None) == (
            200,
            b"ok",
        )
    assert [(r.conn, r.method) for r in up.received] == [
        (0, "GET"), (1, "POST"), (2, "GET"), (3, "POST"),
    ]  # fmt: skip


def dropping(*drops: tuple[int, int]) -> Script:
    """Answers, but reads each request in ``drops`` (connection, place on it) and closes
    unanswered, as an upstream whose keep-alive runs out just as the request arrives."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        if (request.conn, request.nth) in drops:
            return False
        writer.write(OK)
        return True

    return script


async def test_a_get_on_a_connection_dropped_unanswered_is_retried(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """A GET sent on a kept-alive connection that the upstream drops unanswered is sent again,
    once, on a new connection, and the client gets that answer."""
    up = await raw_upstream(dropping((0, 1)))
    client = await proxy_to(up.url)
    assert await fetch(client, "GET", "/first") == (200, b"ok")
    assert await fetch(client, "GET", "/second") == (200, b"ok")
    assert [(r.conn, r.target) for r in up.received] == [
        (0, "/first"), (0, "/second"), (1, "/second"),
    ]  # fmt: skip


async def test_a_get_is_retried_only_once(raw_upstream: StartUpstream, proxy_to: ProxyTo) -> None:
    """When the fresh connection of the retry is dropped too, the client gets 502: the GET went
    out twice in all, never more."""
    up = await raw_upstream(dropping((0, 1), (1, 0)))
    client = await proxy_to(up.url)
    assert await fetch(client, "GET", "/first") == (200, b"ok")
    status, _ = await fetch(client, "GET", "/second")
    assert status == 502
    assert [(r.conn, r.target) for r in up.received] == [
        (0, "/first"), (0, "/second"), (1, "/second"),
    ]  # fmt: skip


@pytest.mark.parametrize("path", ["/pay", "/login"], ids=["forward", "exchange"])
async def test_a_post_on_a_connection_dropped_unanswered_is_not_sent_twice(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, path: str
) -> None:
    """The same drop under a POST: the upstream may have acted on it, so it is not sent again;
    the client gets 502, and the next request is served on a new connection."""
    up = await raw_upstream(dropping((0, 1)))
    client = await proxy_to(up.url)
    assert await fetch(client, "GET", "/first") == (200, b"ok")
    status, _ = await fetch(client, "POST", path, data=b"amount=100")
    assert status == 502
    assert [(r.conn, r.method, r.target) for r in up.received] == [
        (0, "GET", "/first"), (0, "POST", path),
    ]  # fmt: skip
    assert up.received[1].body == b"amount=100"
    assert await fetch(client, "GET", "/third") == (200, b"ok")
    assert [(r.conn, r.target) for r in up.received[2:]] == [(1, "/third")]


# -- 3. interim answers --------------------------------------------------------------------------

CONTINUE = b"HTTP/1.1 100 Continue\r\nX-Interim: 100\r\n\r\n"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"


@pytest.mark.parametrize(
    "interims", [[CONTINUE], [EARLY_HINTS], [CONTINUE, EARLY_HINTS, EARLY_HINTS]]
)
async def test_interim_answers_are_not_passed_on(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, interims: list[bytes]
) -> None:
    """1xx answers before the real one (each arriving on its own): the client gets the final
    answer alone, without the interim headers, and the connection stays in step for the next."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        for interim in interims:
            writer.write(interim)
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nhello")
        return True

    up = await raw_upstream(script)
    client = await proxy_to(up.url)
    raw = await raw_exchange(client, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and raw.count(b"HTTP/1.1 ") == 1
    assert b"\r\nX-Final: yes" in head
    assert b"link:" not in head.lower() and b"x-interim" not in head.lower()
    assert body == b"hello"
    assert await fetch(client, "GET", "/again") == (200, b"hello")
    assert [r.conn for r in up.received] == [0, 0]


# -- 4. broken answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"",
    ],
    ids=[
        "not HTTP", "bad status", "bad length", "two lengths", "length and chunked",
        "bad header", "head cut short", "nothing",
    ],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/x", "/login"], ids=["forward", "exchange"])
async def test_an_answer_that_is_not_valid_http_is_502(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, answer: bytes, path: str
) -> None:
    """An upstream answering what is not a valid HTTP head, or closing without one: 502, and
    the next request is served on a new connection."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        if request.target == "/next":
            writer.write(OK)
            return True
        writer.write(answer)
        return False

    up = await raw_upstream(script)
    client = await proxy_to(up.url)
    status, body = await fetch(client, "POST", path, data=b"x=1")
    assert status == 502 and body is not None and b"is unavailable" in body
    assert await fetch(client, "GET", "/next") == (200, b"ok")
    assert [(r.conn, r.target) for r in up.received] == [(0, path), (1, "/next")]


@pytest.mark.parametrize(
    ("answer", "ending"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this much", "close"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\ne\r\nonly this much\r\n", "close"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this much", "reset"),
        (b"HTTP/1.1 200 OK\r\n\r\nonly this much", "reset"),
    ],
    ids=["Content-Length", "chunked", "Content-Length, reset", "until the close, reset"],
)
async def test_a_body_cut_short_is_not_passed_off_as_complete(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, answer: bytes, ending: str
) -> None:
    """An upstream that closes (or resets) before its body's end: a forwarded client, its status
    line already sent, is cut off (its read fails); through exchange, which reads first, 502.
    A reset never ends a body that runs to the close: only a clean close does."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer)
        if ending == "reset":
            await writer.drain()
            await asyncio.sleep(0.05)  # the proxy has read the start before the reset
            reset(writer)
        return False

    up = await raw_upstream(script)
    client = await proxy_to(up.url)
    assert await fetch(client, "GET", "/download") == (200, None)
    status, _ = await fetch(client, "POST", "/login", data=b"x=1")
    assert status == 502


# -- 5. a body delimited by the close ------------------------------------------------------------


@pytest.mark.parametrize("size", [5, 3 * HIGH_WATER + 1], ids=["small", "past the high water"])
@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
@pytest.mark.parametrize("path", ["/x", "/login"], ids=["forward", "exchange"])
async def test_a_body_delimited_by_the_close_is_passed_on_whole(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, size: int, version: bytes, path: str
) -> None:
    """An answer with neither Content-Length nor chunking, ended by the upstream closing:
    the client gets the whole body, and the next request goes on a new connection."""
    body = pattern(size)
    head = version + b" 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
    up = await raw_upstream(answering(head + body, close=True))
    client = await proxy_to(up.url)
    assert await fetch(client, "POST", path, data=b"x=1") == (200, body)
    assert await fetch(client, "POST", path, data=b"x=1") == (200, body)
    assert [r.conn for r in up.received] == [0, 1]


# -- 6. HEAD -------------------------------------------------------------------------------------


async def test_head_with_a_length_then_get_are_both_answered(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """HEAD's answer announces a Content-Length it never sends: the client gets that length and
    no body, and the GET after it gets its own answer, on a new connection."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        if request.method != "HEAD":
            writer.write(pattern(1234))
        return True

    up = await raw_upstream(script)
    client = await proxy_to(up.url)
    async with client.head("/file") as resp:
        assert (resp.status, resp.headers["Content-Length"]) == (200, "1234")
        assert await resp.read() == b""
    assert await fetch(client, "GET", "/file") == (200, pattern(1234))
    assert await fetch(client, "GET", "/file") == (200, pattern(1234))
    assert [(r.conn, r.method) for r in up.received] == [(0, "HEAD"), (1, "GET"), (1, "GET")]


# -- 7. pool limits ------------------------------------------------------------------------------


async def test_a_full_pool_answers_504_then_serves_again(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """With pool_size 1 and the one connection held, a second request gets 504 after
    connect_timeout; once the first answer ends, the pool serves again on that connection."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        if request.target == "/hold":
            await up.release.wait()
        writer.write(OK)
        return True

    up = await raw_upstream(script)
    client = await proxy_to(up.url, pool_size=1, connect_timeout=0.2)
    first = asyncio.create_task(fetch(client, "GET", "/hold"))
    await up.wait_for(lambda: len(up.received) == 1)
    status, body = await fetch(client, "GET", "/second")
    assert status == 504 and body is not None and b"did not answer in time" in body
    up.release.set()
    assert await first == (200, b"ok")
    assert await fetch(client, "GET", "/third") == (200, b"ok")
    assert [(r.conn, r.target) for r in up.received] == [(0, "/hold"), (0, "/third")]


async def test_failed_exchanges_give_their_connections_back(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """After many failed exchanges (answers that are not HTTP, resets, bodies cut short,
    silences past read_timeout), a pool of two still serves two requests at once."""
    together: list[Received] = []

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        match request.target:
            case "/garbage":
                writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            case "/reset":
                reset(writer)
                return False
            case "/short":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                return False
            case "/silent":
                await up.release.wait()
            case "/together":  # answered only once both are in: each needs a connection
                together.append(request)
                with contextlib.suppress(TimeoutError):
                    await up.wait_for(lambda: len(together) == 2)
                writer.write(OK)
        return True

    up = await raw_upstream(script)
    client = await proxy_to(up.url, pool_size=2, connect_timeout=0.2, read_timeout=0.2)
    expected = {"/garbage": (502, False), "/reset": (502, False), "/short": (200, True)}
    expected["/silent"] = (504, False)
    for path in ["/garbage", "/reset", "/short"] * 4 + ["/silent"] * 2:
        for method in ("GET", "POST"):
            status, body = await fetch(
                client, method, path, data=b"x" if method == "POST" else None
            )
            assert (status, body is None) == expected[path]  # /short: cut off mid-body
    results = await asyncio.gather(*(fetch(client, "GET", "/together") for _ in range(2)))
    assert results == [(200, b"ok"), (200, b"ok")]


async def test_refused_connections_give_their_slots_back(proxy_to: ProxyTo) -> None:
    """An upstream that refuses connections: every request gets 502 (never a 504 for a full
    pool), even with a pool of one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        client = await proxy_to(url, pool_size=1, connect_timeout=0.2)
        for _ in range(3):
            status, _ = await fetch(client, "GET", "/")
            assert status == 502


async def test_closing_the_pool_closes_its_connections(raw_upstream: StartUpstream) -> None:
    """Closing the pool (the app shutting down) closes its idle connections at once and the
    one in use as soon as its answer is released; no request starts after."""
    up = await raw_upstream(answering(OK))
    pool = UpstreamPool(up.url, size=2, connect_timeout=0.5, read_timeout=0.5)
    idle = await pool.request("GET", "/idle", CIMultiDict(), None)
    busy = await pool.request("GET", "/busy", CIMultiDict(), None)
    assert (await idle.read(), await idle.read()) == (b"ok", b"")
    idle.release()
    await pool.close()
    await up.wait_for(lambda: up.ended == {0})
    assert (await busy.read(), await busy.read()) == (b"ok", b"")
    busy.release()
    await up.wait_for(lambda: up.ended == {0, 1})
    with pytest.raises(UpstreamProtocolError):
        await pool.request("GET", "/late", CIMultiDict(), None)
    assert [r.target for r in up.received] == ["/idle", "/busy"]


# -- 8. read timeout -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nthe start",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nthe start\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nthe start",
    ],
    ids=["Content-Length", "chunked", "until the close"],
)
async def test_an_upstream_stalling_mid_body_cuts_the_client_off(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, start: bytes
) -> None:
    """An upstream that sends its head and then nothing for longer than read_timeout: the
    client, its status line already sent, is cut off rather than given a short body."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(start)
        await up.release.wait()
        return False

    up = await raw_upstream(script)
    client = await proxy_to(up.url, read_timeout=0.2)
    assert await fetch(client, "GET", "/") == (200, None)


@pytest.mark.parametrize("path", ["/x", "/login"], ids=["forward", "exchange"])
async def test_an_upstream_silent_before_its_head_is_504(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, path: str
) -> None:
    """An upstream that reads the request and then says nothing past read_timeout: 504."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        await up.release.wait()
        return False

    up = await raw_upstream(script)
    client = await proxy_to(up.url, read_timeout=0.2)
    status, body = await fetch(client, "POST", path, data=b"x=1")
    assert status == 504 and body is not None and b"did not answer in time" in body


async def test_a_slow_but_steady_body_is_not_cut_off(
    raw_upstream: StartUpstream, proxy_to: ProxyTo
) -> None:
    """read_timeout bounds each wait for a byte, not the whole answer: a body trickling in for
    longer than read_timeout, never pausing that long, arrives whole."""

    async def script(up: RawUpstream, request: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for byte in b"trickled":
            await writer.drain()
            await asyncio.sleep(0.06)
            writer.write(bytes([byte]))
        return True

    up = await raw_upstream(script)
    client = await proxy_to(up.url, read_timeout=0.3)
    assert await fetch(client, "GET", "/") == (200, b"trickled")


# -- 9. CR and LF in header values ---------------------------------------------------------------

INJECTIONS = [
    "alice\r\nX-Admin: yes",
    "alice\nX-Admin: yes",
    "alice\rX-Admin: yes",
    "alice\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_the_pool_refuses_a_header_with_cr_or_lf(
    raw_upstream: StartUpstream, value: str
) -> None:
    """A CR or LF in a header's value or name is refused before anything is sent; the pool's one
    slot is still free for the next request."""
    up = await raw_upstream(answering(OK))
    pool = UpstreamPool(up.url, size=1, connect_timeout=0.5, read_timeout=0.5)
    try:
        for headers in ({"X-Forwarded-User": value}, {value.replace(": ", "-"): "1"}):
            with pytest.raises(ValueError, match="CR or LF"):
                await pool.request("GET", "/", CIMultiDict(headers), None)
        assert up.connections == 0
        response = await pool.request("GET", "/", CIMultiDict({"X-Forwarded-User": "alice"}), None)
        assert (response.status, await response.read()) == (200, b"ok")
        response.release()
    finally:
        await pool.close()
    assert [r.header("X-Forwarded-User") for r in up.received] == [["alice"]]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_an_identity_with_cr_or_lf_never_reaches_the_upstream(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, value: str
) -> None:
    """Through the forwarder, an identity value holding a CR or LF fails the request (500)
    without a byte sent upstream: no smuggled header, no smuggled request."""
    up = await raw_upstream(answering(OK))
    client = await proxy_to(up.url, identity={"X-Forwarded-User": value})
    status, _ = await fetch(client, "GET", "/")
    assert status == 500
    assert (up.connections, up.received) == (0, [])


# -- 10. request bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3 * HIGH_WATER + 7])
async def test_a_chunked_client_body_arrives_chunked_and_whole(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, size: int
) -> None:
    """A body the client sends chunked reaches the upstream chunked, well framed, and whole."""
    body = pattern(size)

    async def parts() -> AsyncIterator[bytes]:
        for offset in range(0, size, 50_000):
            yield body[offset : offset + 50_000]

    up = await raw_upstream(answering(OK))
    client = await proxy_to(up.url)
    assert await fetch(client, "POST", "/upload", data=parts()) == (200, b"ok")
    [seen] = up.received
    assert (seen.header("Transfer-Encoding"), seen.header("Content-Length")) == (["chunked"], [])
    assert dechunk(seen.body) == body


@pytest.mark.parametrize("size", [0, 1, 3 * HIGH_WATER + 7])
@pytest.mark.parametrize("path", ["/upload", "/login"], ids=["forward", "exchange"])
async def test_a_client_body_with_a_length_arrives_byte_for_byte(
    raw_upstream: StartUpstream, proxy_to: ProxyTo, size: int, path: str
) -> None:
    """A body the client sends with a Content-Length arrives with that length, byte for byte."""
    body = pattern(size)
    up = await raw_upstream(answering(OK))
    client = await proxy_to(up.url)
    assert await fetch(client, "POST", path, data=body) == (200, b"ok")
    [seen] = up.received
    assert (seen.header("Content-Length"), seen.header("Transfer-Encoding")) == ([str(size)], [])
    assert seen.body == body
