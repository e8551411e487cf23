"""The lean forward-auth listener (``session.forward_auth_listen``): the answer of
``GET /.authshim/session`` to every request on its own port, in order, and nothing looser."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.admin.metrics import METRICS
from proxy.app import SERVICES
from proxy.config import parse_config
from proxy.errors import ConfigError
from proxy.forward_auth.listener import start, unix_socket
from tests.fixtures.proxy import EXAMPLE, SECRET, Proxy, StartProxy, make_config

ANSWER_HEADERS = ("X-Accel-Expires", "Cache-Control", "Vary", "X-Authshim-User-Id",
                  "X-Forwarded-User", "X-Forwarded-Email", "Content-Type")  # fmt: skip


def listen(value: str = "127.0.0.1:0") -> Any:
    def change(raw: dict[str, Any]) -> None:
        raw["session"]["forward_auth_listen"] = value

    return change


@pytest.fixture
async def lean(start_proxy: StartProxy) -> Proxy:
    """authshim with the lean listener on a port of its own."""
    proxy: Proxy = await start_proxy(listen())
    return proxy


def lean_url(proxy: Proxy, path: str = "/.authshim/session") -> str:
    assert proxy.forward_auth is not None
    return f"http://127.0.0.1:{proxy.forward_auth.port}{path}"


async def log_in(proxy: Proxy, email: str, password: str) -> str:
    """A session cookie value of ``email``, from a login through authshim."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        async with client.post(
            proxy.url("/api/login"), json={"email": email, "password": password}
        ) as response:
            assert response.status == 200
            return response.cookies["authshim"].value


async def exchange(
    proxy: Proxy, raw: bytes, *, answers: int = 1, heads: tuple[int, ...] = ()
) -> list[bytes]:
    """Send ``raw`` on one connection to the lean listener; read ``answers`` answers (or what
    comes before the listener closes); those at the indexes ``heads`` answer HEAD requests."""
    assert proxy.forward_auth is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.forward_auth.port)
    writer.write(raw)
    await writer.drain()
    got: list[bytes] = []
    try:
        for i in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(next(
                line.split(b":", 1)[1] for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ))  # fmt: skip
            body = b"" if i in heads else await asyncio.wait_for(reader.readexactly(length), 5)
            got.append(head + body)
    except asyncio.IncompleteReadError as exc:
        got.append(exc.partial)
    finally:
        writer.close()
    return got


def get(cookie: str | None, path: str = "/.authshim/session", **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: auth"]
    if cookie is not None:
        lines.append(f"Cookie: authshim={cookie}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_it_answers_as_the_main_listener_does(lean: Proxy) -> None:
    """Status, identity and cache headers and body are those of GET /.authshim/session on the
    main listener, for a valid session, none, and a forged one."""
    cookie = await log_in(lean, "bob@example.com", "builder-22")
    async with aiohttp.ClientSession() as client:
        for value in (cookie, None, cookie[:-2] + "xx"):
            headers = {"Cookie": f"authshim={value}"} if value else {}
            async with client.get(lean.url("/.authshim/session"), headers=headers) as main:
                expected = (main.status, await main.read(), _picked(main.headers))
            async with client.get(lean_url(lean), headers=headers) as answer:
                assert (answer.status, await answer.read(), _picked(answer.headers)) == expected
    assert expected[0] == 401
    async with aiohttp.ClientSession() as client:
        headers = {"Cookie": f"other=1; authshim={cookie}"}
        async with client.get(lean_url(lean, "/"), headers=headers) as answer:
            assert answer.status == 200
            assert answer.headers["X-Forwarded-User"] == "bob"
            assert answer.headers["X-Forwarded-Email"] == "bob@example.com"


def _picked(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in ANSWER_HEADERS if name in headers}


async def test_any_method_and_path_get_the_session_answer(lean: Proxy) -> None:
    """Envoy appends the page's path and keeps its method: every request is the check; a
    HEAD gets no body; a body is read past."""
    cookie = await log_in(lean, "bob@example.com", "builder-22")
    raw = get(cookie, "/some/page?x=1")
    raw += f"POST /form HTTP/1.1\r\nHost: a\r\nCookie: authshim={cookie}\r\n".encode()
    raw += b"Content-Length: 5\r\n\r\nhello"
    raw += b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
    answers = await exchange(lean, raw, answers=3, heads=(2,))
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"200", b"401"]
    assert answers[2].endswith(b"\r\n\r\n")  # HEAD: the headers only


async def test_pipelined_answers_keep_their_order_when_one_waits_for_the_store(
    lean: Proxy,
) -> None:
    """A user not cached (read from the store) is answered after the requests before it and
    before those after it, on one connection."""
    bob = await log_in(lean, "bob@example.com", "builder-22")
    alice = await log_in(lean, "alice@example.com", "wonderland-1")
    bob_user = await lean.svc.store.find_user("bob@example.com")
    assert bob_user is not None
    lean.svc.sessions.forget(bob_user.id)  # bob's next check reads the store
    raw = get(alice) + get(bob) + get(None) + get(alice)
    answers = await exchange(lean, raw, answers=4)
    users = [_header(a, b"X-Forwarded-User") for a in answers]
    assert users == [b"Alice", b"bob", None, b"Alice"]


def _header(answer: bytes, name: bytes) -> bytes | None:
    for line in answer.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == name.lower():
            return value.strip()
    return None


async def test_a_logged_out_session_is_refused_at_once(lean: Proxy) -> None:
    """Logout revokes here at once, as on the main listener."""
    await lean.form_login("bob", "builder-22")
    cookie = lean.session_cookie()
    assert cookie is not None
    assert (await exchange(lean, get(cookie)))[0].startswith(b"HTTP/1.1 200")
    async with lean.client.get(lean.url("/accounts/logout/"), allow_redirects=False) as out:
        assert out.status == 302
    assert (await exchange(lean, get(cookie)))[0].startswith(b"HTTP/1.1 401")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
         b"431"),
        (b"GET / HTTP/1.1\r\nCookie: " + b"a" * 40_000 + b"\r\n\r\n", b"431"),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"431"),
        (b"POST / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70_000, b"413"),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", b"400"),
    ],
    ids=["garbage", "bad-header", "many-headers", "long-header", "long-url", "big-body", "te-cl"],
)
async def test_unreadable_requests_are_refused_and_the_connection_closed(
    lean: Proxy, raw: bytes, status: bytes
) -> None:
    """Past server.max_headers, max_field_size or max_line_size, a body past 64 KiB, or a
    request llhttp cannot read: an error status, then the connection closes."""
    answers = await exchange(lean, raw + get(None), answers=2)
    assert answers[0].split(b" ", 2)[1] == status
    assert b"Connection: close" in answers[0]
    assert answers[1:] == [b""]  # nothing after: closed


async def test_connection_close_and_http10_close_after_the_answer(lean: Proxy) -> None:
    """A request that asks to close gets its answer, then the close; pipelined requests after
    it are not answered."""
    for first in (get(None, Connection="close"), b"GET / HTTP/1.0\r\n\r\n"):
        answers = await exchange(lean, first + get(None), answers=2)
        assert answers[0].startswith(b"HTTP/1.1 401")
        assert answers[1:] == [b""]


async def test_checks_are_counted_in_the_metrics(lean: Proxy) -> None:
    """The listener's answers appear under their own route in the admin metrics."""
    await exchange(lean, get(None) + get(None), answers=2)
    stats = lean.server.app[METRICS].routes["forward_auth"]
    assert stats.count == 2
    assert stats.outcomes["4xx"] == 2


async def test_a_unix_socket_listener(start_proxy: StartProxy, tmp_path: Path) -> None:
    """``unix:/path``: the same answers on a Unix socket, which web servers on the same host
    reach without TCP."""
    path = str(tmp_path / "fa.sock")
    proxy: Proxy = await start_proxy()
    with unix_socket(path) as sock:
        config = make_config("http://127.0.0.1:1", "sqlite:///x.db", listen(f"unix:{path}"))
        app = proxy.server.app
        listener = await start(app[SERVICES], config, app[METRICS].observe, sock=sock)
        try:
            cookie = await log_in(proxy, "bob@example.com", "builder-22")
            conn = aiohttp.UnixConnector(path=path)
            async with aiohttp.ClientSession(connector=conn) as client:
                headers = {"Cookie": f"authshim={cookie}"}
                async with client.get("http://auth/.authshim/session", headers=headers) as answer:
                    assert answer.status == 200
                    assert answer.headers["X-Forwarded-User"] == "bob"
        finally:
            await listener.stop()
    assert not (tmp_path / "fa.sock").exists()  # removed when serving ends


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("unix:relative.sock", "a Unix socket needs an absolute path"),
        ("localhost", "expected 'host:port'"),
        ("127.0.0.1:8080", "is the address of server.listen"),
    ],
)
def test_bad_addresses_are_config_errors(value: str, message: str) -> None:
    """A relative socket path, no port, or the main listener's own address."""
    def change(raw: dict[str, Any]) -> None:
        raw["server"]["listen"] = "127.0.0.1:8080"
        listen(value)(raw)

    with pytest.raises(ConfigError, match=r"session\.forward_auth_listen: " + message):
        make_config("http://127.0.0.1:1", "sqlite:///x.db", change)


def test_the_address_parses_and_the_environment_overrides_it() -> None:
    """host:port, unix:/path, and $AUTHSHIM_FORWARD_AUTH_LISTEN for containers."""
    tcp = make_config("http://127.0.0.1:1", "sqlite:///x.db", listen("127.0.0.1:8082"))
    assert str(tcp.session.forward_auth_listen) == "127.0.0.1:8082"
    unix = make_config("http://127.0.0.1:1", "sqlite:///x.db", listen("unix:/run/a/fa.sock"))
    assert unix.session.forward_auth_listen is not None
    assert unix.session.forward_auth_listen.path == "/run/a/fa.sock"
    assert make_config("http://127.0.0.1:1", "sqlite:///x.db").session.forward_auth_listen is None
    raw = copy.deepcopy(EXAMPLE)
    env = {"AUTHSHIM_SECRET": SECRET, "AUTHSHIM_FORWARD_AUTH_LISTEN": "0.0.0.0:9000"}
    from_env = parse_config(raw, env).session.forward_auth_listen
    assert from_env is not None
    assert (from_env.host, from_env.port) == ("0.0.0.0", 9000)
