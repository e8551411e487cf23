"""Request smuggling and malformed requests on a raw socket: each is refused or the connection
closed, and the legacy app never sees a smuggled second request."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
LOGIN = b"POST /accounts/login/ HTTP/1.1\r\nHost: a\r\n"

PROBES: dict[str, bytes] = {
    "CL then TE": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE then CL": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "CL+TE on the login route": LOGIN + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n0\r\n\r\n" + SMUGGLED,
    "two Content-Lengths": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
    b"Content-Length: 41\r\n\r\n" + SMUGGLED,
    "two equal Content-Lengths": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
    b"Content-Length: 0\r\n\r\n",
    "Content-Length list": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
    "signed Content-Length": b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "two Hosts": b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "TE xchunked": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"
    b"0\r\n\r\n" + SMUGGLED,
    "TE space before colon": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
    b"\r\n0\r\n\r\n" + SMUGGLED,
    "TE chunked, identity": b"POST /x HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE tab and CL": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two TEs": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: cow\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "TE in HTTP/1.0": b"POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n" + SMUGGLED,
    "TE name split by a newline": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\r\n"
    b": chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "obs-fold TE": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n chunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "bad chunk end": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhelloXX0\r\n\r\n" + SMUGGLED,
    "0x chunk size": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0x5\r\nhello\r\n0\r\n\r\n",
    "negative chunk size": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"-5\r\nhello\r\n0\r\n\r\n",
    "bare LF in chunk extension": b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
    "bare LF everywhere": b"POST /x HTTP/1.1\nHost: a\nContent-Length: 0\n\n"
    b"GET /smuggled HTTP/1.1\nHost: a\n\n",
    "bare LF in one header": b"GET /x HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
    "obs-fold identity": b"GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-User: a\r\n admin\r\n\r\n",
    "NUL in a value": b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
    "CR in a value": b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Forwarded-User: admin\r\n\r\n",
    "NUL in the path": b"GET /x\x00y HTTP/1.1\r\nHost: a\r\n\r\n",
    "space in a name": b"GET /x HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
    "HTTP/1.2": b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n",
    "HTTP/0.9 with headers": b"POST /x\r\nContent-Length: 5\r\n\r\nhello",
    "oversized header": b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n",
    "oversized request line": b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "too many headers": b"GET /x HTTP/1.1\r\nHost: a\r\n"
    + b"".join(b"X-%d: a\r\n" % i for i in range(200))
    + b"\r\n",
}


async def send_raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Write ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        async with asyncio.timeout(wait):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def statuses(raw: bytes) -> list[int]:
    # Not anchored to a line: an answer's body need not end in a newline.
    return [int(s) for s in re.findall(rb"HTTP/\d\.\d (\d{3}) [A-Za-z ]*\r\n", raw)]


@pytest.mark.parametrize("probe", list(PROBES), ids=list(PROBES))
async def test_each_probe_is_refused_and_nothing_is_smuggled(
    proxy: Proxy, legacy: FakeLegacy, probe: str
) -> None:
    """The probe gets one 400 and a closed connection; the legacy app sees no request at all."""
    raw = await send_raw(proxy.server.port, PROBES[probe])
    assert statuses(raw) == [400]
    assert legacy.seen == []


async def test_a_pipelining_flood_is_answered_in_order_and_health_stays_up(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """Three hundred pipelined requests on one connection get 300 answers in order, while
    another connection's health check is answered meanwhile."""
    flood = b"".join(b"GET /n/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(299))
    flood += b"GET /n/299 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    task = asyncio.create_task(send_raw(proxy.server.port, flood, wait=30))
    async with proxy.client.get(proxy.url("/.authshim/session")) as health:
        assert health.status == 401
    raw = await task
    assert statuses(raw) == [200] * 300
    assert [s.path for s in legacy.seen] == [f"/n/{i}" for i in range(300)]


async def test_a_bad_request_in_a_pipeline_stops_everything_after_it(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A malformed request in a pipeline ends it with 400; nothing after it reaches upstream."""
    good = b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
    bad = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    raw = await send_raw(proxy.server.port, good + bad + SMUGGLED)
    # llhttp parses the whole buffer at once, so the 400 may come before /first is answered.
    assert statuses(raw)[-1] == 400
    assert {s.path for s in legacy.seen} <= {"/first"}


async def test_a_login_body_carrying_a_request_is_only_a_body(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A request inside a well-framed login body goes upstream as body bytes, never as a request."""
    body = b"username=bob&password=x&junk=" + SMUGGLED.replace(b"\r\n", b"%0D%0A")
    body += b"\r\n\r\n" + SMUGGLED
    data = LOGIN + b"Content-Type: application/x-www-form-urlencoded\r\n"
    data += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    raw = await send_raw(proxy.server.port, data)
    assert len(statuses(raw)) == 1
    assert all(s.path != "/smuggled" for s in legacy.seen)
