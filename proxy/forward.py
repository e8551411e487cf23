"""The streaming forwarder: requests go to the legacy app and answers come back chunk by chunk.

This is the one place where aiohttp client errors become ``UpstreamUnavailable`` (502) or
``UpstreamTimeout`` (504). Bodies stream both ways, so an upload or download of any size costs
a few buffers of memory, never its own size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy import log
from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from proxy.headers import (
    WEBSOCKET_HANDSHAKE,
    client_response_headers,
    may_name_upstream,
    public_origin,
    rewrite_upstream_urls,
    upstream_request_headers,
    websocket_protocols,
)
from proxy.upstream import UpstreamPool, UpstreamResponse

CHUNK = 64 * 1024
_NO_IDENTITY: Mapping[str, str] = MappingProxyType({})
# The client's request goes upstream as it was sent: aiohttp must not add defaults of its own.
_SKIP_AUTO_HEADERS = (hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE)
_BODYLESS_STATUS = frozenset({204, 304})

AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def create_client_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """Return the app's one pooled keep-alive session to the upstream."""
    # No total timeout: a long download is fine as long as bytes keep coming (sock_read).
    # ``connect`` includes waiting for a free pooled connection, so a full pool answers 504.
    timeout = aiohttp.ClientTimeout(
        total=None, connect=config.connect_timeout, sock_read=config.read_timeout
    )
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.pool_size),
        timeout=timeout,
        auto_decompress=False,  # bodies pass through byte for byte, Content-Encoding and all
        cookie_jar=aiohttp.DummyCookieJar(),  # SECURITY: one user's cookies must never leak
        skip_auto_headers=_SKIP_AUTO_HEADERS,
    )


# SECURITY: what clients read names no internal address; the log line has the upstream.
_FAILURE_PAGES = {504: "authshim: the site did not answer in time\n"}
_UNAVAILABLE_PAGE = "authshim: the site is unavailable\n"


def upstream_failure(exc: UpstreamError) -> web.Response:
    """The plain-text 502 or 504 a client gets when the upstream failed."""
    return web.Response(status=exc.status, text=_FAILURE_PAGES.get(exc.status, _UNAVAILABLE_PAGE))


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """The upstream's answer, its body read up to ``max_answer`` bytes."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes
    complete: bool
    # What respond() needs to stream the unread rest: the still-open response and the byte
    # read past max_answer (it told us the answer was longer). Only valid inside exchange().
    _rest: UpstreamResponse | None = field(default=None, repr=False, compare=False)
    _overflow: bytes = field(default=b"", repr=False, compare=False)


Answer = aiohttp.ClientResponse | UpstreamResponse


class Relayed(web.Response):
    """An upstream's answer that had arrived whole: aiohttp writes its head and body in one go.
    (Its own class, so that an upstream's 502 is never counted as authshim's.)"""


class Forwarder:
    """Relays clients' requests to the upstream over its own keep-alive pool
    (``proxy/upstream.py``), and sends authshim's own requests and WebSockets over ``session``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: UpstreamConfig,
        *,
        identity_strip: frozenset[str],
        trusted_proxies: tuple[str, ...] = (),
        public_url: str | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._base = config.url.rstrip("/")
        self._prefix = urlsplit(self._base).path
        self._pool = UpstreamPool(
            config.url, size=config.pool_size,
            connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
        )  # fmt: skip
        self._identity_strip = identity_strip
        self._trusted_proxies = trusted_proxies
        self._public_url = public_url

    async def forward(
        self,
        request: web.Request,
        *,
        identity: Mapping[str, str] = _NO_IDENTITY,
        body: bytes | None = None,
        cookies: Sequence[str] = (),
        target: str | None = None,
    ) -> web.StreamResponse:
        """Pass ``request`` upstream and stream the answer back; 502/504 when the upstream fails.

        ``body`` replaces the client's body (already read by the caller); ``cookies`` are
        appended to the answer as extra ``Set-Cookie`` headers; ``target`` (a path and query)
        replaces the client's request target, as an intercepted route re-encodes what it read.
        """
        try:
            if _is_websocket(request):
                return await self._websocket(request, identity)
            with self._translated():
                upstream = await self._send(request, identity, body, target)
            try:
                return await self._relay(request, upstream, b"", upstream, cookies)
            finally:
                upstream.release()  # back to the pool, or closed when its body was not read out
        except UpstreamError as exc:
            return self._failure(request, exc)

    @asynccontextmanager
    async def exchange(
        self,
        request: web.Request,
        *,
        body: bytes,
        identity: Mapping[str, str] = _NO_IDENTITY,
        target: str | None = None,
    ) -> AsyncIterator[UpstreamAnswer]:
        """Send ``request`` with ``body`` (and ``target``, see ``forward``) upstream and yield the
        answer, body read up to ``max_answer``; the upstream response stays open until the block
        ends.

        Raises:
            UpstreamUnavailable, UpstreamTimeout: the upstream failed before the answer was read.
        """
        with self._translated():
            upstream = await self._send(request, identity, body, target)
        try:
            with self._translated():
                prefix = await _read_at_most(upstream.content, self._config.max_answer + 1)
            yield self._answer(upstream, prefix, keep_open=True)
        finally:
            upstream.release()

    async def respond(
        self, request: web.Request, answer: UpstreamAnswer, *, cookies: Sequence[str] = ()
    ) -> web.StreamResponse:
        """Write ``answer`` to the client unchanged plus ``cookies``; call inside ``exchange``."""
        return await self._relay(
            request, answer, answer.body + answer._overflow, answer._rest, cookies
        )

    async def get(self, path: str, *, headers: Mapping[str, str]) -> UpstreamAnswer:
        """GET ``path`` from the upstream, the body read up to ``max_answer``.

        Raises:
            UpstreamUnavailable, UpstreamTimeout: the upstream failed.
        """
        return await self.send("GET", path, headers=headers)

    async def send(
        self, method: str, path: str, *, headers: Mapping[str, str], body: bytes | None = None
    ) -> UpstreamAnswer:
        """Send a request of authshim's own (not a client's) to the upstream; see ``get``."""
        with self._translated():
            async with self._session.request(
                method, URL(self._base + path), headers=headers, data=body, allow_redirects=False
            ) as upstream:
                prefix = await _read_at_most(upstream.content, self._config.max_answer + 1)
                return self._answer(upstream, prefix, keep_open=False)

    async def close(self) -> None:
        """Close the idle upstream connections (the session is its owner's to close)."""
        await self._pool.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _path(self, request: web.BaseRequest) -> str:
        """The upstream request target: the same raw path and query under the base URL's path,
        byte for byte, never re-quoted."""
        return self._prefix + _raw_target(request)

    def _target(self, request: web.BaseRequest) -> URL:
        """The upstream URL for ``request`` (WebSockets, over aiohttp's client)."""
        # encoded=True: the path and query go upstream byte for byte, never re-quoted.
        return URL(self._base + _raw_target(request), encoded=True)

    def _headers(self, request: web.BaseRequest, identity: Mapping[str, str]) -> CIMultiDict[str]:
        return upstream_request_headers(
            request,
            identity=identity,
            identity_strip=self._identity_strip,
            trusted_proxies=self._trusted_proxies,
            public_url=self._public_url,
        )

    def _send(
        self,
        request: web.Request,
        identity: Mapping[str, str],
        body: bytes | None,
        target: str | None = None,
    ) -> Coroutine[Any, Any, UpstreamResponse]:
        """Send the request upstream; awaited (inside ``_translated``), the answer once its head
        is in, which the caller releases. The pool's coroutine itself: one frame less."""
        headers = self._headers(request, identity)
        data: bytes | aiohttp.StreamReader | None = None
        if body is not None:
            data = body
            headers[hdrs.CONTENT_LENGTH] = str(len(body))
        elif request.body_exists:
            # Streamed as it arrives. A client Content-Length stays in the headers; a chunked
            # body stays chunked. Redirects are the client's business: never followed.
            data = request.content
        path = self._path(request) if target is None else self._prefix + target
        return self._pool.request(request.method, path, headers, data)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn aiohttp client errors raised in the block into the proxy's own errors."""
        try:
            yield
        except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
            raise UpstreamTimeout("the upstream did not answer in time") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable("the upstream is unavailable") from exc

    def _answer(self, upstream: Answer, prefix: bytes, *, keep_open: bool) -> UpstreamAnswer:
        limit = self._config.max_answer
        complete = len(prefix) <= limit
        return UpstreamAnswer(
            status=upstream.status,
            reason=upstream.reason or "",
            headers=upstream.headers,
            body=prefix[:limit],
            complete=complete,
            _rest=upstream
            if keep_open and not complete and isinstance(upstream, UpstreamResponse)
            else None,
            _overflow=prefix[limit:],
        )

    async def _relay(
        self,
        request: web.Request,
        head: UpstreamResponse | UpstreamAnswer,
        prefix: bytes,
        rest: UpstreamResponse | None,
        cookies: Sequence[str],
    ) -> web.StreamResponse:
        """Write ``head``'s status and headers, then ``prefix``, then what ``rest`` still has."""
        headers = client_response_headers(head.headers)
        if may_name_upstream(headers):
            # Redirects and cookie domains naming the upstream's own address would send the
            # client around authshim; they name the public address instead.
            public = public_origin(
                request, configured=self._public_url, trusted_proxies=self._trusted_proxies
            )
            rewrite_upstream_urls(headers, self._base, public)
        for cookie in cookies:
            headers.add(hdrs.SET_COOKIE, cookie)
        reason = head.reason or None
        bodyless = request.method == hdrs.METH_HEAD or head.status in _BODYLESS_STATUS
        # An answer of a known length that is all in goes out whole, head and body in one write.
        # A chunked one stays chunked (its framing is the upstream's, e.g. a stream).
        if not bodyless and hdrs.CONTENT_LENGTH in headers:
            if rest is not None and (whole := rest.whole_body()) is not None:
                prefix, rest = prefix + whole, None
            if rest is None:
                return Relayed(status=head.status, reason=reason, headers=headers, body=prefix)
        response = web.StreamResponse(status=head.status, reason=reason, headers=headers)
        try:
            await response.prepare(request)
            if bodyless:
                return response
            if prefix:
                await response.write(prefix)
            while rest is not None and (chunk := await self._read_more(request, rest)):
                await response.write(chunk)
        except ConnectionResetError:  # response.write() found the client gone
            log.event("client.gone", method=request.method, path=request.path, when="mid-answer")
            if rest is not None:
                rest.close()
        return response

    async def _read_more(self, request: web.Request, upstream: UpstreamResponse) -> bytes:
        """The next chunk of the upstream's body; b"" at its end or when the upstream fails."""
        try:
            with self._translated():
                return await upstream.content.read(CHUNK)
        except UpstreamError as exc:
            # The status line is already out, so no 502 now. Cutting the client off is the
            # only honest signal left: it then sees a truncated answer, not a complete one.
            log.warning(
                "upstream.failed", method=request.method, path=request.path, when="mid-answer",
                status=exc.status, error=type(exc.__cause__).__name__, upstream=self._base,
            )  # fmt: skip
            upstream.close()
            if request.transport is not None:
                request.transport.close()
            return b""

    def _failure(self, request: web.Request, exc: UpstreamError) -> web.Response:
        # SECURITY: the path only; a query can carry reset tokens, and aiohttp's error text
        # can carry the URL, so the cause is named by its class alone.
        if request.transport is None or request.transport.is_closing():
            log.event("client.gone", method=request.method, path=request.path, when="before-answer")
        else:
            log.warning(
                "upstream.failed", method=request.method, path=request.path, status=exc.status,
                error=type(exc.__cause__).__name__, upstream=self._base,
            )  # fmt: skip
        return upstream_failure(exc)

    async def _websocket(
        self, request: web.Request, identity: Mapping[str, str]
    ) -> web.StreamResponse:
        """Open the upstream WebSocket first, then accept the client's with the same subprotocol,
        and pump messages both ways until either side closes."""
        headers = self._headers(request, identity)
        for name in WEBSOCKET_HANDSHAKE:
            headers.popall(name, None)
        try:
            with self._translated():
                upstream = await self._session.ws_connect(
                    self._target(request),
                    headers=headers,
                    protocols=websocket_protocols(request.headers),
                )
        except UpstreamError as exc:
            if isinstance(exc.__cause__, aiohttp.WSServerHandshakeError):
                # The upstream answered but would not upgrade: a 401/403/404 is its to give.
                status = exc.__cause__.status
                if 400 <= status < 600:
                    return web.Response(status=status, text="authshim: upgrade refused\n")
            raise
        chosen = upstream.protocol
        client = web.WebSocketResponse(protocols=(chosen,) if chosen else ())
        try:
            await client.prepare(request)
            await _bridge(client, upstream)
        except ConnectionResetError:
            log.event("client.gone", method=request.method, path=request.path, when="websocket")
        finally:
            # Also reached when aiohttp cancels the handler because the client hung up, which
            # may interrupt the pump that was passing the client's close code on.
            await upstream.close(
                code=_close_code(client.close_code, aiohttp.WSCloseCode.GOING_AWAY)
            )
        return client


def _raw_target(request: web.BaseRequest) -> str:
    raw = request.raw_path
    if not raw.startswith("/"):  # absolute-form or '*' request target
        raw = request.rel_url.raw_path_qs
    return raw


def _is_websocket(request: web.BaseRequest) -> bool:
    if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
        return False
    probe = web.WebSocketResponse(protocols=websocket_protocols(request.headers))
    return bool(probe.can_prepare(request))  # a well-formed handshake, else plain HTTP


async def _read_at_most(content: aiohttp.StreamReader | UpstreamResponse, limit: int) -> bytes:
    """Read until ``limit`` bytes or the end of ``content``, whichever comes first."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (chunk := await content.read(limit - size)):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


async def _bridge(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Pump both ways; each pump closes its sink when its source closes, ending the other."""
    pumps = [
        asyncio.create_task(_pump(client, upstream, abnormal=aiohttp.WSCloseCode.GOING_AWAY)),
        asyncio.create_task(_pump(upstream, client, abnormal=aiohttp.WSCloseCode.BAD_GATEWAY)),
    ]
    try:
        await asyncio.gather(*pumps)
    finally:
        for pump in pumps:  # still running only if the other failed or we were cancelled
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _pump(source: AnyWebSocket, sink: AnyWebSocket, *, abnormal: int) -> None:
    try:
        async for msg in source:
            if msg.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif msg.type is aiohttp.WSMsgType.ERROR:
                break
    except ConnectionResetError:
        pass  # the sink is gone; closing it below is a no-op and ends the other pump
    await sink.close(code=_close_code(source.close_code, abnormal))


def _close_code(code: int | None, abnormal: int) -> int:
    """The code to pass on: 1005/1006/1015 describe a close and must never be sent (RFC 6455)."""
    if code is None or code == aiohttp.WSCloseCode.OK or code == 1005:
        return aiohttp.WSCloseCode.OK
    if 1000 < code < 1004 or 1006 < code < 1015 or 3000 <= code < 5000:
        return code
    return abnormal
