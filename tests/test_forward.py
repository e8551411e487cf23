"""Tests for proxy/forward.py: a fake upstream on a real socket, the forwarder in front of it."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from proxy.forward import CHUNK, Forwarder, UpstreamAnswer, create_client_session, upstream_failure
from proxy.headers import identity_names, normalise_name

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
STRIP = identity_names(["X-Forwarded-User", "X-Forwarded-Email"])
BLOCK = bytes(range(256)) * (CHUNK // 256)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pattern(n: int) -> bytes:
    """``n`` bytes that make misplaced or lost chunks visible."""
    return (BLOCK * (n // len(BLOCK) + 1))[:n]


def blocks(size: int) -> list[int]:
    """The chunk sizes a streamed body of ``size`` bytes is generated in."""
    return [min(CHUNK, size - offset) for offset in range(0, size, CHUNK)]


def crc_of_blocks(size: int) -> int:
    """The CRC-32 of a streamed body, computed without holding it."""
    crc = 0
    for n in blocks(size):
        crc = zlib.crc32(BLOCK[:n], crc)
    return crc


# -- the fake upstream ---------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes
    peer_port: int

    def names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


@dataclass
class Upstream:
    server: TestServer | None = None
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    ws_closed: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    aborted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")


def upstream_app(up: Upstream) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = b"" if request.path in ("/upload", "/ws") else await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        up.seen.append(Seen(request.method, request.raw_path, raw, body, peer[1] if peer else 0))
        return await handler(request)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="cookies")
        response.headers.add("Set-Cookie", "a=1; Path=/; HttpOnly")
        response.headers.add("Set-Cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/")
        return response

    async def hop(request: web.Request) -> web.Response:
        headers = {"Connection": "X-Up-Hop", "X-Up-Hop": "1", "Keep-Alive": "timeout=5"}
        headers |= {"Proxy-Authenticate": "Basic", "X-Kept": "yes"}
        return web.Response(text="hop", headers=headers)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(up.release.wait(), 10)
        return web.Response(text="late")

    async def pause(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.Response(text="paused")

    async def length(request: web.Request) -> web.Response:
        return web.Response(body=pattern(1234), content_type="application/octet-stream")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two"):
            await response.write(part)
        return response

    async def etag(request: web.Request) -> web.Response:
        return web.Response(status=304, headers={"ETag": '"v1"'})

    async def download(request: web.Request) -> web.StreamResponse:
        size = int(request.query["n"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        sent = 0
        try:
            for n in blocks(size):
                await response.write(BLOCK[:n])
                sent += n
        except ConnectionResetError:
            pass
        finally:  # also when this test server cancels the handler as the proxy hangs up
            if sent < size:
                up.aborted.set()
        return response

    async def truncated(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100_000
        await response.prepare(request)
        await response.write(pattern(1000))
        assert request.transport is not None
        request.transport.close()
        return response

    async def upload(request: web.Request) -> web.Response:
        size, crc = 0, 0
        while chunk := await request.content.read(CHUNK):  # streamed, never held whole
            size, crc = size + len(chunk), zlib.crc32(chunk, crc)
        return web.json_response({"size": size, "crc": crc})

    async def login(request: web.Request) -> web.Response:
        if request.query.get("slow"):
            await asyncio.wait_for(up.release.wait(), 10)
        size = int(request.query.get("size", 0))
        response = web.Response(
            status=200, reason="Welcome", body=pattern(size) if size else b'{"ok": true}'
        )
        response.headers.add("Set-Cookie", "sessionid=s1; Path=/; HttpOnly")
        response.headers.add("Set-Cookie", "csrftoken=c1; Path=/")
        return response

    async def profile(request: web.Request) -> web.Response:
        return web.json_response({"id": 7, "cookie": request.headers.get("Cookie")})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse(protocols=("chat.v2",))
        await sock.prepare(request)
        async for msg in sock:
            if msg.type is aiohttp.WSMsgType.TEXT and msg.data == "bye":
                await sock.close(code=4002, message=b"upstream says bye")
            elif msg.type is aiohttp.WSMsgType.TEXT:
                await sock.send_str("echo:" + msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
        if not up.ws_closed.done():
            up.ws_closed.set_result(sock.close_code)
        return sock

    app = web.Application(middlewares=[record])
    routes: dict[str, Handler] = {
        "/cookies": cookies,
        "/hop": hop,
        "/slow": slow,
        "/pause": pause,
        "/length": length,
    }
    routes |= {"/chunked": chunked, "/etag": etag, "/download": download, "/ws": ws}
    routes |= {"/truncated": truncated, "/profile": profile}
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    app.router.add_post("/upload", upload)
    app.router.add_post("/login", login)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[Upstream]:
    """The fake legacy app; it records every request it receives."""
    up = Upstream()
    up.server = await aiohttp_server(upstream_app(up))
    yield up
    up.release.set()  # let parked handlers finish so the server closes promptly


# -- the proxy under test ------------------------------------------------------------------------


class Server(TestServer):
    """A TestServer that cancels handlers when their client hangs up only if asked to;
    aiohttp's own runners (and so authshim in production) let them run on by default."""

    def __init__(self, app: web.Application, *, handler_cancellation: bool) -> None:
        super().__init__(app)
        self._handler_cancellation = handler_cancellation

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs["handler_cancellation"] = self._handler_cancellation
        return await super()._make_runner(**kwargs)


FORWARDER = web.AppKey("forwarder", Forwarder)
ANSWERS = web.AppKey("answers", list[UpstreamAnswer])
ERRORS = web.AppKey("errors", list[UpstreamError])
MakeProxy = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def make_proxy(aiohttp_client: Callable[..., Awaitable[Any]]) -> MakeProxy:
    """Build a proxy app whose catch-all route calls Forwarder.forward and whose /login route
    uses exchange + respond; return a test client for it."""

    async def make(
        url: str,
        *,
        identity: dict[str, str] | None = None,
        cookies: tuple[str, ...] = (),
        trusted: tuple[str, ...] = (),
        handler_cancellation: bool = False,
        **upstream: Any,
    ) -> TestClient[web.Request, web.Application]:
        config = UpstreamConfig(url=url, **upstream)

        async def client_session(app: web.Application) -> AsyncIterator[None]:
            session = create_client_session(config)
            app[FORWARDER] = Forwarder(
                session, config, identity_strip=STRIP, trusted_proxies=trusted
            )
            yield
            await session.close()

        async def passthrough(request: web.Request) -> web.StreamResponse:
            return await request.app[FORWARDER].forward(
                request, identity=identity or {}, cookies=cookies
            )

        async def login(request: web.Request) -> web.StreamResponse:
            forwarder = request.app[FORWARDER]
            body = await request.read()
            try:
                async with forwarder.exchange(request, body=body, identity=identity or {}) as a:
                    request.app[ANSWERS].append(a)
                    return await forwarder.respond(request, a, cookies=["authshim=t0k; Path=/"])
            except UpstreamError as exc:
                request.app[ERRORS].append(exc)
                return upstream_failure(exc)

        app = web.Application()
        app[ANSWERS], app[ERRORS] = [], []
        app.cleanup_ctx.append(client_session)
        app.router.add_post("/login", login)
        app.router.add_route("*", "/{tail:.*}", passthrough)
        server = Server(app, handler_cancellation=handler_cancellation)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            server, cookie_jar=aiohttp.DummyCookieJar()
        )
        return client

    return make


def raw_url(client: TestClient[web.Request, web.Application], raw: str) -> URL:
    """An absolute URL that aiohttp sends byte for byte (no re-quoting)."""
    return URL(str(client.make_url("/")).rstrip("/") + raw, encoded=True)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- pass-through --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/legacy"])
async def test_request_arrives_unchanged(
    upstream: Upstream, make_proxy: MakeProxy, prefix: str
) -> None:
    """Method, raw path and query, body and repeated cookies arrive unchanged, under a base path."""
    client = await make_proxy(upstream.url + prefix)
    raw = "/a%2Fb/c%20d;p?q=a%20b&q=c&empty=&t=%7E"
    headers = [("Cookie", "a=1"), ("Cookie", "b=2; c=3"), ("Content-Type", "text/plain")]
    async with client.session.request(
        "PATCH",
        raw_url(client, raw),
        data=b"payload \x00\xff",
        headers=headers,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
    ) as resp:
        assert resp.status == 200
    seen = upstream.seen[-1]
    assert (seen.method, seen.raw_path, seen.body) == ("PATCH", prefix + raw, b"payload \x00\xff")
    assert seen.get("Cookie") == ["a=1", "b=2; c=3"]
    assert seen.get("Host") == [upstream.url.removeprefix("http://")]
    # Nothing of aiohttp's own: the upstream sees what the client sent, plus X-Forwarded-*.
    assert {"user-agent", "accept", "accept-encoding"}.isdisjoint(seen.names())


async def test_repeated_set_cookies_come_back_unchanged(
    upstream: Upstream, make_proxy: MakeProxy
) -> None:
    """Each upstream Set-Cookie reaches the client separately and byte for byte, extras after."""
    client = await make_proxy(upstream.url, cookies=("authshim=x; Path=/",))
    async with client.get("/cookies") as resp:
        assert resp.headers.getall("Set-Cookie") == [
            "a=1; Path=/; HttpOnly",
            "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/",
            "authshim=x; Path=/",
        ]
        assert await resp.text() == "cookies"


async def test_hop_by_hop_headers_are_removed(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """Hop-by-hop headers, including those named in Connection, cross in neither direction."""
    client = await make_proxy(upstream.url)
    headers = {"Connection": "keep-alive, X-Hop", "X-Hop": "1", "TE": "trailers"}
    headers |= {"Proxy-Authorization": "Basic eDp5", "Trailer": "X-T", "X-Kept": "yes"}
    async with client.get("/hop", headers=headers) as resp:
        assert {"x-up-hop", "keep-alive", "proxy-authenticate"}.isdisjoint(
            {n.lower() for n in resp.headers}
        )
        assert resp.headers["X-Kept"] == "yes"
    seen = upstream.seen[-1]
    assert {"x-hop", "te", "proxy-authorization", "trailer"}.isdisjoint(seen.names())
    assert seen.get("X-Kept") == ["yes"]


@pytest.mark.parametrize("trusted", [(), ("127.0.0.1",)])
async def test_x_forwarded_headers(
    upstream: Upstream, make_proxy: MakeProxy, trusted: tuple[str, ...]
) -> None:
    """X-Forwarded-For/Proto/Host are set; the client's XFF and Proto count only if trusted."""
    client = await make_proxy(upstream.url, trusted=trusted)
    headers = {"Host": "site.example", "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
    async with client.get("/", headers=headers):
        pass
    seen = upstream.seen[-1]
    if trusted:
        assert seen.get("X-Forwarded-For") == ["6.6.6.6, 127.0.0.1"]
        assert seen.get("X-Forwarded-Proto") == ["https"]
    else:
        assert seen.get("X-Forwarded-For") == ["127.0.0.1"]
        assert seen.get("X-Forwarded-Proto") == ["http"]
    assert seen.get("X-Forwarded-Host") == ["site.example"]
    assert seen.get("Host") == [upstream.url.removeprefix("http://")]


@pytest.mark.parametrize("identity", [{}, {"X-Forwarded-User": "alice"}])
async def test_spoofed_identity_headers_are_stripped(
    upstream: Upstream, make_proxy: MakeProxy, identity: dict[str, str]
) -> None:
    """Spoofed identity headers in any spelling never arrive; only the configured ones do."""
    client = await make_proxy(upstream.url, identity=identity)
    spoofs = [("X-Forwarded-User", "root"), ("x-forwarded-user", "root")]
    spoofs += [("X-Forwarded_User", "root"), ("X_FORWARDED_EMAIL", "root@example.com")]
    async with client.get("/", headers=spoofs):
        pass
    seen = upstream.seen[-1]
    arrived = [(n, v) for n, v in seen.headers if normalise_name(n) in STRIP]
    assert arrived == list(identity.items())


async def test_keep_alive_pooling(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """Requests share pooled upstream connections, never more than pool_size at once."""
    client = await make_proxy(upstream.url, pool_size=2)
    for _ in range(10):
        async with client.get("/") as resp:
            await resp.read()
    assert len({s.peer_port for s in upstream.seen}) == 1

    upstream.seen.clear()

    async def one() -> None:
        async with client.get("/pause") as resp:
            assert await resp.text() == "paused"

    await asyncio.gather(*(one() for _ in range(12)))
    assert len(upstream.seen) == 12
    assert len({s.peer_port for s in upstream.seen}) <= 2


async def test_content_length_preserved(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """A request or answer with a Content-Length keeps it; a chunked one stays chunked."""
    client = await make_proxy(upstream.url)
    async with client.post("/", data=pattern(5000)):
        pass
    seen = upstream.seen[-1]
    assert (seen.get("Content-Length"), seen.body) == (["5000"], pattern(5000))
    assert "transfer-encoding" not in seen.names()

    async def parts() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    async with client.post("/", data=parts()):
        pass
    seen = upstream.seen[-1]
    assert (seen.get("Transfer-Encoding"), seen.body) == (["chunked"], b"one,two")
    assert "content-length" not in seen.names()

    async with client.get("/length") as resp:
        assert resp.headers["Content-Length"] == "1234"
        assert "Transfer-Encoding" not in resp.headers
        assert await resp.read() == pattern(1234)
    async with client.get("/chunked") as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in resp.headers
        assert await resp.read() == b"one,two"


async def test_head_and_304_are_bodyless(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """HEAD keeps the upstream's Content-Length without a body; a 304 has no body."""
    client = await make_proxy(upstream.url)
    async with client.head("/length") as resp:
        assert (resp.status, resp.headers["Content-Length"]) == (200, "1234")
        assert await resp.read() == b""
    async with client.get("/etag") as resp:
        assert (resp.status, resp.headers["ETag"]) == (304, '"v1"')
        assert await resp.read() == b""
    async with client.get("/") as resp:  # the connection is still in step afterwards
        assert await resp.text() == "ok"


# -- failures ------------------------------------------------------------------------------------


async def test_closed_upstream_port_is_502(
    make_proxy: MakeProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection gets a plain-text 502 naming no internal address, and one JSON
    log line naming the upstream, without query or cookies."""
    url = f"http://127.0.0.1:{closed_port()}"
    client = await make_proxy(url)
    with caplog.at_level(logging.INFO, logger="authshim"):
        async with client.get("/x?token=s3cret", headers={"Cookie": "sid=s3cret"}) as resp:
            assert resp.status == 502
            assert resp.content_type == "text/plain"
            assert await resp.text() == "authshim: the site is unavailable\n"
    records = [r for r in caplog.records if '"upstream.failed"' in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert json.loads(records[0].getMessage()) == {
        "event": "upstream.failed", "method": "GET", "path": "/x", "status": 502,
        "error": "ConnectionRefusedError", "upstream": url,
    }  # fmt: skip


async def test_slow_upstream_is_504(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """An upstream slower than read_timeout gets a 504 in about read_timeout."""
    client = await make_proxy(upstream.url, read_timeout=0.2)
    started = time.monotonic()
    async with client.get("/slow") as resp:
        assert resp.status == 504
        assert await resp.text() == "authshim: the site did not answer in time\n"
    assert time.monotonic() - started < 2


async def test_upstream_dying_mid_answer_is_not_passed_off_as_complete(
    upstream: Upstream, make_proxy: MakeProxy
) -> None:
    """When the upstream drops mid-body the client's connection is cut, not ended cleanly."""
    client = await make_proxy(upstream.url)
    async with client.get("/truncated") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_client_leaving_mid_download_is_quiet(
    upstream: Upstream,
    make_proxy: MakeProxy,
    caplog: pytest.LogCaptureFixture,
    handler_cancellation: bool,
) -> None:
    """A client hanging up mid-download frees the upstream without an error or traceback."""
    client = await make_proxy(upstream.url, handler_cancellation=handler_cancellation)
    with caplog.at_level(logging.DEBUG):
        resp = await client.get("/download?n=" + str(200 * MB))
        await resp.content.read(CHUNK)
        resp.close()
        await asyncio.wait_for(upstream.aborted.wait(), 10)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    async with client.get("/") as again:
        assert await again.text() == "ok"


# -- the login flow's exchange + respond ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1023, 1024, 1025, 100_000])
async def test_exchange_and_respond_pass_the_answer_unchanged(
    upstream: Upstream, make_proxy: MakeProxy, size: int
) -> None:
    """exchange reads at most max_answer bytes; respond passes it all on unchanged plus a cookie."""
    client = await make_proxy(upstream.url, max_answer=1024, identity={"X-Forwarded-User": "a"})
    body = b"username=alice&password=p%40ss"
    async with client.post(f"/login?size={size}", data=body) as resp:
        assert (resp.status, resp.reason) == (200, "Welcome")
        assert resp.headers.getall("Set-Cookie") == [
            "sessionid=s1; Path=/; HttpOnly",
            "csrftoken=c1; Path=/",
            "authshim=t0k; Path=/",
        ]
        expected = pattern(size) if size else b'{"ok": true}'
        assert await resp.read() == expected
    [answer] = client.app[ANSWERS]
    assert answer.complete == (len(expected) <= 1024)
    assert answer.body == expected[:1024]
    assert answer.headers.getall("Set-Cookie")[0] == "sessionid=s1; Path=/; HttpOnly"
    seen = upstream.seen[-1]
    assert (seen.body, seen.get("Content-Length")) == (body, [str(len(body))])
    assert seen.get("X-Forwarded-User") == ["a"]


async def test_exchange_raises_upstream_errors(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """exchange raises UpstreamTimeout/UpstreamUnavailable for the caller to answer."""
    client = await make_proxy(upstream.url, read_timeout=0.2)
    async with client.post("/login?slow=1", data=b"x=1") as resp:
        assert resp.status == 504
    down = await make_proxy(f"http://127.0.0.1:{closed_port()}")
    async with down.post("/login", data=b"x=1") as resp:
        assert resp.status == 502
    assert [type(e) for e in client.app[ERRORS] + down.app[ERRORS]] == [
        UpstreamTimeout,
        UpstreamUnavailable,
    ]


async def test_get_fetches_with_given_headers(upstream: Upstream, make_proxy: MakeProxy) -> None:
    """get sends only the given headers and returns the bounded answer; a dead upstream raises."""
    client = await make_proxy(upstream.url)
    answer = await client.app[FORWARDER].get("/profile", headers={"Cookie": "sessionid=s1"})
    assert (answer.status, answer.complete) == (200, True)
    assert answer.body == b'{"id": 7, "cookie": "sessionid=s1"}'
    down = await make_proxy(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(UpstreamUnavailable):
        await down.app[FORWARDER].get("/profile", headers={})


# -- WebSocket -----------------------------------------------------------------------------------


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_websocket_echo_through_the_proxy(
    upstream: Upstream, make_proxy: MakeProxy, handler_cancellation: bool
) -> None:
    """A WebSocket passes through with subprotocol, cookies, identity, messages and close code."""
    client = await make_proxy(
        upstream.url,
        identity={"X-Forwarded-User": "alice"},
        handler_cancellation=handler_cancellation,
    )
    headers = {"Cookie": "sid=abc", "X-Forwarded_User": "root"}
    async with client.ws_connect("/ws", protocols=("chat.v1", "chat.v2"), headers=headers) as ws:
        assert ws.protocol == "chat.v2"
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == "echo:hi"
        await ws.send_bytes(b"\x01\x02\x03")
        assert await ws.receive_bytes(timeout=5) == b"\x03\x02\x01"
        await ws.close(code=4001)
    assert await asyncio.wait_for(upstream.ws_closed, 5) == 4001
    seen = upstream.seen[-1]
    assert seen.get("Cookie") == ["sid=abc"]
    assert [(n, v) for n, v in seen.headers if normalise_name(n) in STRIP] == [
        ("X-Forwarded-User", "alice")
    ]


async def test_websocket_upstream_close_reaches_client(
    upstream: Upstream, make_proxy: MakeProxy
) -> None:
    """When the upstream closes a WebSocket the client sees the same close code."""
    client = await make_proxy(upstream.url)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("bye")
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4002)


# -- memory: 200 MB each way through a forwarder in its own process ------------------------------


def peak_rss_kib(pid: int | str = "self") -> int:
    """VmHWM, the peak resident set size, of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
async def test_200mb_upload_and_download_stream_in_bounded_memory(upstream: Upstream) -> None:
    """200 MB each way stream through intact while the forwarder's peak RSS barely moves."""
    size = 200 * MB
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.forward_server", upstream.url,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        base = f"http://127.0.0.1:{port}"
        own_before = peak_rss_kib()
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/") as resp:  # warm up: imports, pools, buffers
                assert await resp.text() == "ok"
            baseline = peak_rss_kib(proc.pid)

            async def generated() -> AsyncIterator[bytes]:
                for n in blocks(size):
                    yield BLOCK[:n]

            async with session.post(base + "/upload", data=generated()) as resp:
                assert await resp.json() == {"size": size, "crc": crc_of_blocks(size)}
            after_upload = peak_rss_kib(proc.pid)

            received, crc = 0, 0
            async with session.get(base + f"/download?n={size}") as resp:
                assert resp.headers["Content-Length"] == str(size)
                async for chunk in resp.content.iter_chunked(CHUNK):
                    received, crc = received + len(chunk), zlib.crc32(chunk, crc)
            assert (received, crc) == (size, crc_of_blocks(size))
            after_download = peak_rss_kib(proc.pid)
        own_growth = peak_rss_kib() - own_before
    finally:
        proc.terminate()
        await proc.communicate()
    print(
        f"\nforwarder VmHWM: baseline {baseline / 1024:.1f} MiB, after 200 MB upload "
        f"{after_upload / 1024:.1f} MiB, after 200 MB download {after_download / 1024:.1f} MiB; "
        f"test process peak grew {own_growth / 1024:.1f} MiB"
    )
    assert after_download - baseline < 60 * 1024
    assert own_growth < 60 * 1024
