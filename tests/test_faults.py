"""Faults: the legacy app slow, failing or gone mid-login, and authshim itself killed with
SIGKILL during captures and reset requests: no half-written user, no duplicate, every
acknowledged capture kept, every acknowledged reset mailed once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from tests.accounts import read_mail
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import SECRET, Proxy, StartProxy

ROOT = Path(__file__).resolve().parent.parent


async def json_login(proxy: Proxy, email: str, password: str) -> int:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}
    ) as response:
        await response.read()
        return response.status


async def test_a_slow_legacy_app_gets_504_and_nothing_is_stored(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """A legacy login slower than upstream.read_timeout: 504, and no capture."""
    proxy = await start_proxy(lambda raw: raw["upstream"].update(read_timeout="200ms"))
    legacy.login_delay = 1.0
    assert await json_login(proxy, "bob@example.com", "builder-22") == 504
    assert await proxy.svc.store.count_users() == 0


async def test_a_failing_profile_fetch_leaves_the_answer_and_stores_nothing(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """The legacy app accepts the login but its profile endpoint answers 500: the client gets
    the legacy answer, nothing is stored, the rejection is counted."""
    proxy = await start_proxy()
    legacy.me_status = 500
    response = await proxy.form_login("bob", "builder-22")
    assert response.status == 302 and "sessionid" in response.cookies
    assert await proxy.svc.store.count_users() == 0
    assert proxy.svc.counters.totals["capture.rejected.no_profile"] == 1


async def test_garbage_from_the_legacy_app_is_passed_on_not_captured(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """A profile that is not JSON is no capture; the client still gets the legacy answer."""
    proxy = await start_proxy()
    legacy.profile_override = {"id": None, "email": "\x00\ud800garbage"}
    status = await json_login(proxy, "bob@example.com", "builder-22")
    assert status == 200 and await proxy.svc.store.count_users() == 0


async def test_the_legacy_app_killed_mid_login(
    start_proxy: StartProxy, legacy: FakeLegacy, legacy_server: TestServer
) -> None:
    """The legacy app goes away while a login waits on it: 502 or 504, nothing stored."""
    proxy = await start_proxy()
    legacy.login_delay = 0.5
    pending = asyncio.create_task(json_login(proxy, "bob@example.com", "builder-22"))
    await asyncio.sleep(0.2)
    assert legacy_server.runner is not None and legacy_server.runner.server is not None
    for connection in list(legacy_server.runner.server.connections):
        assert connection.transport is not None
        connection.transport.abort()  # a crash: no graceful end to the request in flight
    assert await pending in (502, 504)
    assert await proxy.svc.store.count_users() == 0


# -- authshim killed with SIGKILL -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, upstream: str, db: Path, port: int, extra: str = "") -> None:
    path.write_text(
        f"""
[server]
listen = "127.0.0.1:{port}"
[upstream]
url = "{upstream}"
[store]
url = "sqlite:///{db}"
[[login]]
path = "/api/login"
format = "json"
identifier = "email"
password = "password"
success = {{ status = [200], json = "/ok" }}
profile = {{ json = "/user" }}
answer = {{ json = {{ ok = true }} }}
failure = {{ status = 401, json = {{ error = "invalid credentials" }} }}
[session]
secret = "env:AUTHSHIM_SECRET"
secure = false
[passwords]
time_cost = 1
memory_cost = 1024
workers = 2
[limits]
login_ip = 100000
reset_ip = 100000
"""
        + extra
    )


async def start_authshim(config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTHSHIM_SECRET": SECRET}
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, then polled without blocking
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return process
        except OSError:
            await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError("authshim did not start")


def stored(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM users")]


@pytest.mark.slow
async def test_sigkill_during_captures_loses_no_acknowledged_user(
    tmp_path: Path, legacy: FakeLegacy, legacy_server: TestServer
) -> None:
    """Captures race a kill -9; after a restart every acknowledged capture is there, whole,
    once, and answered locally."""
    for i in range(200):
        legacy.add_user(100 + i, f"user{i}", f"user{i}@example.com", f"password-{i}")
    port, db, config = free_port(), tmp_path / "authshim.db", tmp_path / "authshim.toml"
    write_config(config, str(legacy_server.make_url("")).rstrip("/"), db, port)
    process = await start_authshim(config, port)
    acknowledged: list[int] = []
    enough = asyncio.Event()

    async def capture(client: aiohttp.ClientSession, i: int) -> None:
        try:
            async with client.post(
                f"http://127.0.0.1:{port}/api/login",
                json={"email": f"user{i}@example.com", "password": f"password-{i}"},
            ) as response:
                await response.read()
                if response.status == 200 and "authshim" in response.cookies:
                    acknowledged.append(i)  # the client was told it has an authshim session
                    if len(acknowledged) >= 20:
                        enough.set()
        except aiohttp.ClientError:
            pass  # cut off by the kill: not acknowledged

    try:
        async with aiohttp.ClientSession() as client:
            tasks = [asyncio.create_task(capture(client, i)) for i in range(200)]
            await asyncio.wait_for(enough.wait(), 30)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            await asyncio.gather(*tasks)
    finally:
        process.kill()  # also when the captures never got going: no process outlives the test
        process.wait()
    assert 20 <= len(acknowledged) < 200  # the kill really landed mid-run

    users = stored(db)
    emails = [u["email"] for u in users]
    assert len(emails) == len(set(emails))  # no duplicate
    for user in users:  # no half-written user
        assert user["password_hash"].startswith("$argon2id$")
        profile = orjson.loads(user["profile"])
        assert profile["email"] == user["email"] and user["legacy_id"] == str(profile["id"])
    assert {f"user{i}@example.com" for i in acknowledged} <= set(emails)

    process = await start_authshim(config, port)
    try:
        before = len(legacy.logins())
        async with aiohttp.ClientSession() as client:
            for i in acknowledged[:10]:
                async with client.post(
                    f"http://127.0.0.1:{port}/api/login",
                    json={"email": f"user{i}@example.com", "password": f"password-{i}"},
                ) as response:
                    assert response.status == 200
        assert len(legacy.logins()) == before  # answered from the store
    finally:
        process.terminate()
        process.wait(timeout=20)


def reset_sections(upstream: str, outbox: Path) -> str:
    """[reset] (JSON, on /api/reset), [mail] to a folder and [lookup] on the fake legacy app."""
    return f"""
[reset]
request_path = "/api/reset"
format = "json"
email = "email"
link = "http://127.0.0.1/.authshim/reset?token={{token}}"
[mail]
transport = "file"
folder = "{outbox}"
from = "noreply@example.com"
poll = "100ms"
[lookup]
by_email = "{upstream}/internal/users?email={{email}}"
timeout = "1s"
"""


@pytest.mark.slow
async def test_sigkill_after_reset_answers_loses_no_reset_and_mails_each_once(
    tmp_path: Path, legacy: FakeLegacy, legacy_server: TestServer
) -> None:
    """A burst of reset requests is answered, then authshim is killed -9 before the mail went
    out; after a restart each acknowledged request of a known user has exactly one mail, and
    unknown emails none."""
    for i in range(30):
        legacy.add_user(100 + i, f"user{i}", f"user{i}@example.com", f"password-{i}")
    legacy.lookup_delay = 0.3  # the worker is still busy when the answers are all in
    upstream = str(legacy_server.make_url("")).rstrip("/")
    port, db, config = free_port(), tmp_path / "authshim.db", tmp_path / "authshim.toml"
    outbox = tmp_path / "outbox"
    write_config(config, upstream, db, port, reset_sections(upstream, outbox))
    process = await start_authshim(config, port)
    addresses = [f"{who}{i}@example.com" for i in range(30) for who in ("user", "nobody")]

    async def request(client: aiohttp.ClientSession, address: str) -> str | None:
        async with client.post(
            f"http://127.0.0.1:{port}/api/reset", json={"email": address}
        ) as response:
            await response.read()
            return address if response.status == 200 else None

    try:
        async with aiohttp.ClientSession() as client:
            answered = await asyncio.gather(*(request(client, a) for a in addresses))
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    acknowledged = {a for a in answered if a is not None}
    known = {a for a in acknowledged if a.startswith("user")}
    assert len(acknowledged) == 60
    assert len(read_mail(outbox)) < len(known)  # the kill really landed before the mail

    process = await start_authshim(config, port)
    try:
        # A request the killed process had claimed waits for its lease (lookup.timeout + 10s).
        for _ in range(200):
            if len(read_mail(outbox)) >= len(known):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # more worker rounds: nothing is mailed twice
    finally:
        process.terminate()
        process.wait(timeout=20)
    recipients = [m["To"] for m in read_mail(outbox)]
    assert sorted(recipients) == sorted(known)  # each known address once, no unknown one
    with sqlite3.connect(db) as conn:
        pending = conn.execute("SELECT count(*) FROM reset_requests WHERE done_at IS NULL")
        assert pending.fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (len(known),)


# -- SIGTERM with a request half-read -----------------------------------------------------------


@pytest.mark.slow
async def test_sigterm_while_a_login_body_arrives_reads_and_answers_it(
    tmp_path: Path, legacy: FakeLegacy, legacy_server: TestServer
) -> None:
    """SIGTERM while a login's body is half-sent: new connections are refused, the rest of
    the body is still read and the login answered (and captured), not cut off with 408; then
    the process exits by itself, well within its drain bound."""
    port, db, config = free_port(), tmp_path / "authshim.db", tmp_path / "authshim.toml"
    write_config(config, str(legacy_server.make_url("")).rstrip("/"), db, port)
    process = await start_authshim(config, port)
    try:
        body = orjson.dumps({"email": "bob@example.com", "password": "builder-22"})
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:10])
        )
        await writer.drain()
        await asyncio.sleep(0.5)  # the login's handler is reading the body
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        with pytest.raises(OSError):  # refused: the listener closed at once
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(body[10:])
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        writer.close()
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"authshim=" in head  # captured: the store was still open to take it
        for _ in range(400):  # 20 s: the drain (15 s) is over at once, nothing is left in it
            if process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert process.poll() == 0
    finally:
        process.kill()
        process.wait()
    assert [u["email"] for u in stored(db)] == ["bob@example.com"]
