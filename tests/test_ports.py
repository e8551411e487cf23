"""``proxy/ports.py``: authshim refuses a listen address that something already serves."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from proxy.cli import main
from tests.test_server import ROOT, SECRET, Running, free_port, write_config


async def _serve(config: Path, workers: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "serve", "--config", str(config),
        "--workers", str(workers),
        cwd=ROOT, env={**os.environ, "AUTHSHIM_SECRET": SECRET},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_second_authshim_on_the_same_port_is_refused(
    legacy_server: TestServer, tmp_path: Path
) -> None:
    """Two `serve --workers 2` on one port: the second exits 1 in one line, the first serves on."""
    port = free_port()
    upstream = str(legacy_server.make_url("")).rstrip("/")
    first = await _serve(write_config(tmp_path, port, upstream), 2)
    try:
        running = Running(first, port)
        await running.wait_for_workers(2)
        other = tmp_path / "other"
        other.mkdir()
        second = await _serve(write_config(other, port, upstream), 2)
        assert await asyncio.wait_for(second.wait(), 20) == 1
        assert second.stderr is not None
        err = (await second.stderr.read()).decode()
        assert err == (
            f"authshim: server.listen: another authshim already serves 127.0.0.1:{port};"
            " stop it first, or give this one another address\n"
        )
        assert await running.get_many(10) == [200] * 10  # all to the first: it alone listens
    finally:
        first.terminate()
        await first.wait()


def test_a_port_in_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve on a port another program listens on: exit 1 and one line naming key and address."""
    monkeypatch.setenv("AUTHSHIM_SECRET", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port, "http://127.0.0.1:9")
        assert main(["serve", "--config", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"authshim: server.listen: 127.0.0.1:{port} is already in use by another program\n"
    )


def test_an_admin_port_in_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin listener's port taken: serve exits 1 before serving, naming admin.listen."""
    monkeypatch.setenv("AUTHSHIM_SECRET", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = taken.getsockname()[1]
        config = write_config(tmp_path, free_port(), "http://127.0.0.1:9", admin_port=admin)
        assert main(["serve", "--config", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"authshim: admin.listen: 127.0.0.1:{admin} is already in use by another program\n"
    )


def test_the_demo_on_a_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`authshim demo` with its port taken exits 1 with one line naming the option to change."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--legacy-port", "0", "--admin-port", "0"]) == 1
    assert capsys.readouterr().err == (
        f"authshim: --port: 127.0.0.1:{port} is already in use by another program\n"
    )
