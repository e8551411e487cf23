"""``authshim serve --workers N``: worker processes sharing one port, supervised by the parent."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy import ports
from proxy.cli import main
from proxy.forward_auth.listener import unix_socket

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789-abcdefghijklmnop"

Serve = Callable[..., Awaitable["Running"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    folder: Path,
    port: int,
    upstream: str,
    admin_port: int | None = None,
    forward_auth: str | None = None,
    name: str = "authshim.toml",
) -> Path:
    config = folder / name
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[upstream]\nurl = "{upstream}"\n'
        f'[store]\nurl = "sqlite:///{folder / "authshim.db"}"\n'
        '[session]\nsecret = "env:AUTHSHIM_SECRET"\nsecure = false\n'
        + (f'forward_auth_listen = "{forward_auth}"\n' if forward_auth else "")
        +
        "[passwords]\ntime_cost = 1\nmemory_cost = 64\nworkers = 1\n"
        + (f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n' if admin_port else "")
    )
    return config


def children(pid: int) -> set[int]:
    """The pids whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            inodes.add(fields[9])
    return inodes


def sockets_of(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


class Running:
    """A running ``authshim serve`` subprocess and its port."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port

    async def wait_for_workers(self, n: int, within: float = 20) -> set[int]:
        """Wait until ``n`` workers each listen on the port; return their pids."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            workers = children(self.proc.pid)
            listening = listening_inodes(self.port)
            if len(workers) == n and all(sockets_of(w) & listening for w in workers):
                return workers
            assert self.proc.returncode is None, "authshim exited before serving"
            await asyncio.sleep(0.05)
        raise AssertionError(f"{n} listening workers not seen in {within} s")

    async def get_many(self, n: int) -> list[int]:
        """GET / ``n`` times, each on a new connection (so the kernel spreads them)."""
        statuses = []
        for _ in range(n):
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as c,
                c.get(f"http://127.0.0.1:{self.port}/page") as answer,
            ):
                statuses.append(answer.status)
        return statuses


@pytest.fixture
async def serve(legacy_server: TestServer, tmp_path: Path) -> AsyncIterator[Serve]:
    """Start ``authshim serve --workers N`` in front of the fake legacy app."""
    started: list[asyncio.subprocess.Process] = []

    async def start(
        workers: int,
        port: int | None = None,
        admin_port: int | None = None,
        forward_auth: str | None = None,
    ) -> Running:
        port = port or free_port()
        upstream = str(legacy_server.make_url("")).rstrip("/")
        name = f"authshim-{len(started)}.toml"
        config = write_config(tmp_path, port, upstream, admin_port, forward_auth, name)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.cli", "serve", "--config", str(config),
            "--workers", str(workers),
            cwd=ROOT, env={**os.environ, "AUTHSHIM_SECRET": SECRET},
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        started.append(proc)
        return Running(proc, port)

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_workers_share_the_port_and_answer(serve: Serve) -> None:
    """--workers 2 runs two worker processes, each listening on the port, and requests succeed."""
    running = await serve(2)
    workers = await running.wait_for_workers(2)
    assert len(workers) == 2
    assert await running.get_many(20) == [200] * 20


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_every_process_cleanly(serve: Serve, signum: signal.Signals) -> None:
    """SIGTERM or SIGINT to the parent stops both workers and the parent, with status 0."""
    running = await serve(2)
    workers = await running.wait_for_workers(2)
    running.proc.send_signal(signum)
    assert await asyncio.wait_for(running.proc.wait(), 20) == 0
    for pid in workers:
        assert not alive(pid), f"worker {pid} outlived its parent"


async def test_a_dead_worker_is_replaced(serve: Serve) -> None:
    """A worker killed while serving is restarted, and the port keeps answering."""
    running = await serve(2)
    workers = await running.wait_for_workers(2)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while victim in (after := children(running.proc.pid)) or len(after) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        await asyncio.sleep(0.05)
    await running.wait_for_workers(2)
    assert await running.get_many(10) == [200] * 10


async def test_workers_failing_at_start_stop_the_server(serve: Serve, tmp_path: Path) -> None:
    """When the store cannot open, the workers die at start and the parent exits 1, leaving none."""
    (tmp_path / "authshim.db").mkdir()  # the store's path is a folder: SQLite cannot open it
    running = await serve(2)
    assert await asyncio.wait_for(running.proc.wait(), 20) == 1
    assert running.proc.stderr is not None
    assert b"worker.failed" in await running.proc.stderr.read()


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    """--workers 0 is refused by the command line, naming the problem."""
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--workers", "0"])
    assert exc.value.code == 2
    assert "must be 1 or more" in capsys.readouterr().err


def test_workers_need_a_fixed_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several workers cannot share port 0 (each would get its own): exit 2, saying why."""
    config = write_config(tmp_path, 0, "http://127.0.0.1:9")
    monkeypatch.setenv("AUTHSHIM_SECRET", SECRET)
    assert main(["serve", "--config", str(config), "--workers", "2"]) == 2
    assert "fixed port" in capsys.readouterr().err


async def test_one_worker_serves_the_admin_listener(serve: Serve) -> None:
    """With [admin] and --workers 2, exactly one worker listens on the admin port and answers."""
    admin_port = free_port()
    running = await serve(2, admin_port=admin_port)
    workers = await running.wait_for_workers(2)
    deadline = time.monotonic() + 20
    while not listening_inodes(admin_port):
        assert time.monotonic() < deadline, "the admin listener never started"
        await asyncio.sleep(0.05)
    admin_sockets = listening_inodes(admin_port)
    assert len([w for w in workers if sockets_of(w) & admin_sockets]) == 1
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{admin_port}/admin/mode") as answer,
    ):
        assert answer.status == 200 and (await answer.json())["mode"] == "migrate"


async def test_workers_share_the_forward_auth_listener_on_tcp(serve: Serve) -> None:
    """session.forward_auth_listen on TCP: every worker listens on its port (SO_REUSEPORT),
    and each answers the check."""
    fa_port = free_port()
    running = await serve(2, forward_auth=f"127.0.0.1:{fa_port}")
    workers = await running.wait_for_workers(2)
    deadline = time.monotonic() + 20
    while len([w for w in workers if sockets_of(w) & listening_inodes(fa_port)]) < 2:
        assert time.monotonic() < deadline, "both workers did not listen on the forward-auth port"
        await asyncio.sleep(0.05)
    for _ in range(10):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as c,
            c.get(f"http://127.0.0.1:{fa_port}/.authshim/session") as answer,
        ):
            assert answer.status == 401


async def test_the_forward_auth_unix_socket_is_shared_refused_twice_and_removed(
    serve: Serve, tmp_path: Path
) -> None:
    """unix:/path: the workers accept on the socket the parent bound; a second authshim on the
    same path is refused; the socket file goes when serving ends."""
    path = tmp_path / "fa.sock"
    running = await serve(2, forward_auth=f"unix:{path}")
    await running.wait_for_workers(2)
    for _ in range(10):
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as c,
            c.get("http://auth/.authshim/session") as answer,
        ):
            assert answer.status == 401
    assert oct(path.stat().st_mode & 0o777) == oct(0o666)
    second = await serve(1, forward_auth=f"unix:{path}")
    assert await asyncio.wait_for(second.proc.wait(), 20) == 1
    assert second.proc.stderr is not None
    assert b"session.forward_auth_listen: another authshim already serves unix:" in (
        await second.proc.stderr.read()
    )
    running.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(running.proc.wait(), 20) == 0
    assert not path.exists()


def test_a_stale_socket_is_replaced_and_a_file_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regular file where the socket goes is left alone and named; nothing is served."""
    path = tmp_path / "fa.sock"
    path.write_text("keep me")
    config = write_config(tmp_path, free_port(), "http://127.0.0.1:9", forward_auth=f"unix:{path}")
    monkeypatch.setenv("AUTHSHIM_SECRET", SECRET)
    assert main(["serve", "--config", str(config)]) == 1
    assert "exists and is not a socket" in capsys.readouterr().err
    assert path.read_text() == "keep me"
    path.unlink()
    with socket.socket(socket.AF_UNIX) as gone:  # a socket file whose process ended
        gone.bind(str(path))
    ports.check_socket_free("session.forward_auth_listen", str(path))
    with unix_socket(str(path)) as sock:
        assert sock.getsockname() == str(path)
