"""Property-based hostile input: any body, any encoding, huge or deeply nested, on every
intercepted login route, and any headers through the rewriting: never a 500, never a crash,
never a stored record from a failed login."""

from __future__ import annotations

import asyncio
import http.client
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.app import create_app
from proxy.headers import HOP_BY_HOP, identity_names, upstream_request_headers
from tests.fixtures.legacy import FakeLegacy, create_legacy_app
from tests.fixtures.proxy import make_config

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
IDENTITY = ["X-Forwarded-User", "X-Forwarded-Email"]


@web.middleware
async def _legacy_never_500(request: web.Request, handler: Any) -> web.StreamResponse:
    """The fake legacy app is a strict, naive reader that crashes on hostile input (as real
    ones do); its crashes become a marked 400 here, so that any 500 a test sees is authshim's."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except Exception:  # any crash of the fake itself, whatever the input broke
        return web.Response(status=400, text="legacy: bad input", headers={"X-Fake": "crashed"})


class Running:
    """The fake legacy app and authshim on their own event loop in a thread."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[TestServer] = []
        self.port = self._call(self._start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> int:
        legacy = FakeLegacy()
        legacy.add_user(2, "bob", "bob@example.com", "builder-22")
        app = create_legacy_app(legacy)
        app.middlewares.append(_legacy_never_500)
        upstream = TestServer(app, host="127.0.0.1")
        await upstream.start_server()
        # Limits off: every example must reach the deepest path, not a 429.
        config = make_config(
            str(upstream.make_url("")).rstrip("/"),
            f"sqlite:///{self.db}",
            lambda raw: raw.update(limits={"enabled": False}),
        )
        proxy = TestServer(create_app(config), host="127.0.0.1")
        await proxy.start_server()
        self.servers = [proxy, upstream]
        return int(proxy.port or 0)

    async def _stop(self) -> None:
        for server in self.servers:
            await server.close()

    def close(self) -> None:
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def post(self, path: str, body: bytes, content_type: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": content_type})
            return conn.getresponse().status
        finally:
            conn.close()

    def users(self) -> int:
        with sqlite3.connect(self.db) as db:
            return int(db.execute("SELECT count(*) FROM users").fetchone()[0])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """authshim in front of the fake legacy app, shared by every example of this module."""
    server = Running(tmp_path_factory.mktemp("hostile") / "authshim.db")
    try:
        yield server
    finally:
        server.close()


ROUTES = st.sampled_from(["/api/login", "/accounts/login/", "//api//login/"])
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded; charset=utf-16",
        "",
    ]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
FIELD = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=5000),
    st.sampled_from(["bob", "bob@example.com", "BOB@EXAMPLE.COM ", "b\x00ob", "\ud800"]),
    JSON,
)


def check(running: Running, status: int) -> None:
    assert status != 500 and status < 600, status
    assert running.users() == 0  # no password in these examples is bob's


@SETTINGS
@given(path=ROUTES, body=st.binary(max_size=4096), content_type=CONTENT_TYPES)
def test_any_bytes(running: Running, path: str, body: bytes, content_type: str) -> None:
    """Random bytes under any content type: an answer below 500 and nothing stored."""
    check(running, running.post(path, body, content_type))


@SETTINGS
@given(email=FIELD, password=FIELD, extra=st.dictionaries(st.text(max_size=5), JSON, max_size=3))
def test_any_json_fields(running: Running, email: Any, password: Any, extra: Any) -> None:
    """JSON bodies with any values, lone surrogates and huge strings included."""
    doc = {**extra, "email": email, "password": password}
    body = orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS) if _encodable(doc) else b"{}"
    check(running, running.post("/api/login", body, "application/json"))


@SETTINGS
@given(
    username=st.text(),
    password=st.text(),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252"]),
)
def test_any_form_encoding(running: Running, username: str, password: str, encoding: str) -> None:
    """Form bodies in any encoding (what old sites send): never a 500."""
    from urllib.parse import urlencode

    form = urlencode(
        {"username": username, "password": password}, encoding=encoding, errors="replace"
    )
    check(
        running,
        running.post("/accounts/login/", form.encode(), "application/x-www-form-urlencoded"),
    )


@pytest.mark.parametrize("depth", [10, 1000, 5000, 100_000])
def test_deeply_nested_json(running: Running, depth: int) -> None:
    """Nesting far past any parser's recursion limit gets a 4xx, not a crash."""
    body = (
        b'{"email": "bob@example.com", "password": "x", "n": ' + b"[" * depth + b"]" * depth + b"}"
    )
    check(running, running.post("/api/login", body, "application/json"))


def _encodable(doc: Any) -> bool:
    try:
        orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


# -- header rewriting ---------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(
        [
            "X-Forwarded-User", "x-forwarded-user", "X_Forwarded_User", "X-FORWARDED_EMAIL",
            "X-Authshim-User-Id", "Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade",
            "X-Forwarded-For", "Forwarded", "X-Real-IP", "Host", "Expect", "Te", "Trailer",
        ]
    ),
    st.from_regex(r"\A[A-Za-z0-9_-]{1,20}\Z"),
)  # fmt: skip
VALUES = st.from_regex(r"\A[ -~]{0,40}\Z")


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.tuples(NAMES, VALUES), max_size=12),
    connection=st.lists(NAMES, max_size=3),
    session=st.booleans(),
)
def test_no_client_header_can_claim_an_identity(
    headers: list[tuple[str, str]], connection: list[str], session: bool
) -> None:
    """Whatever a client sends, identity headers upstream are exactly authshim's own, and no
    hop-by-hop header or header named in Connection crosses."""
    raw = CIMultiDict(headers)
    if connection:
        raw.add("Connection", ", ".join(connection))
    request = make_mocked_request("GET", "/", headers=raw)
    identity = {"X-Forwarded-User": "bob"} if session else {}
    strip = identity_names([*IDENTITY, "X-Authshim-User-Id"])
    out = upstream_request_headers(
        request, identity=identity, identity_strip=strip, trusted_proxies=()
    )
    claimed = [(n, v) for n, v in out.items() if n.lower().replace("_", "-") in strip]
    assert claimed == list(identity.items())
    dropped = HOP_BY_HOP | {c.strip().lower() for c in connection}
    own = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", *map(str.lower, identity)}
    assert not {n.lower() for n in out} & (dropped - own)  # authshim's own are set anyway
    assert "forwarded" not in {n.lower() for n in out}  # untrusted peer
