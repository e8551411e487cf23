"""The authshim command, called through main(argv)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.cli import main
from proxy.commands.store import masked
from proxy.demo import Demo, guide, start_demo
from store.errors import StoreNotFound
from store.factory import create_store, require_existing
from tests import admin_seed
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.store import _drop_schema
from tests.test_server import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_check_config_prints_ok(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-config prints ok for the example with its secret set."""
    monkeypatch.setenv("AUTHSHIM_SECRET", "x" * 40)
    monkeypatch.setenv("LEGACY_LOOKUP_AUTH", "Bearer x")  # the example's [lookup] header
    assert main(["check-config", str(ROOT / "examples" / "authshim.toml")]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_check_config_lists_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config exits 2 and lists each problem by key."""
    path = tmp_path / "a.toml"
    path.write_text('[upstream]\nurl = "nope"\n[session]\nsecret = "short"\n')
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "upstream.url" in err and "session.secret" in err


@pytest.fixture
async def created(store_url: str) -> AsyncIterator[str]:
    """The URL of a store of each backend that exists (opened once), empty."""
    store = create_store(store_url)
    await store.open()
    await store.close()
    yield store_url
    await _drop_schema(store_url)


def test_mode_shows_and_switches(created: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`authshim mode` shows migrate; `mode cutover` switches, naming the store it changed."""
    assert main(["mode", "--store", created]) == 0
    assert capsys.readouterr() == ("migrate\n", "")
    assert main(["mode", "cutover", "--store", created]) == 0
    assert capsys.readouterr() == (
        "cutover\n", f"authshim: {masked(created)}: mode cutover (was migrate)\n"
    )
    assert main(["mode", "--store", created]) == 0
    assert capsys.readouterr() == ("cutover\n", "")


def test_mode_reads_the_store_from_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`authshim mode --config` needs only [store] and [migration], no secrets."""
    (tmp_path / "s.db").touch()  # an existing (empty) SQLite file is a store to open
    path = tmp_path / "a.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[migration]\nmode = "cutover"\n')
    assert main(["mode", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "cutover"


def test_mode_refuses_a_store_that_does_not_exist(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mode cutover` on a mistyped store exits 1 naming it, and creates nothing there."""
    assert main(["mode", "cutover", "--store", store_url]) == 1
    assert "no store " in capsys.readouterr().err
    with pytest.raises(StoreNotFound):
        asyncio.run(require_existing(store_url))  # still nothing: no file, no schema


@pytest.mark.parametrize(
    "command",
    [
        ["users", "list"], ["users", "show", "bob"], ["users", "export"], ["stats"], ["mode"],
        ["store", "migrate-to", "sqlite:///{tmp}/target.db", "--from"],
    ],
)  # fmt: skip
def test_store_commands_refuse_a_missing_store(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands that read or change a store refuse a missing one and create no file or folder."""
    missing = tmp_path / "typo" / "authshim.db"
    where = ["--store"] if command[0] != "store" else []
    argv = [a.format(tmp=tmp_path) for a in command] + where + [f"sqlite:///{missing}"]
    assert main(argv) == 1
    assert f"the file {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists() and not (tmp_path / "target.db").exists()


async def test_the_demo_migrates_a_user(tmp_path: Path) -> None:
    """The demo's site and proxy run; a login through it is captured and then answered locally."""
    demo = await start_demo(port=0, legacy_port=0, folder=tmp_path, admin_port=0)
    try:
        assert demo.proxy_url in guide(demo)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            for _ in range(2):
                async with client.post(
                    demo.proxy_url + "/api/login",
                    json={"email": "bob@example.com", "password": "builder123"},
                ) as r:
                    assert r.status == 200 and (await r.json())["ok"] is True
            async with client.get(demo.proxy_url + "/private/") as r:
                assert "told by authshim" in await r.text()
        async with aiohttp.ClientSession() as client:
            async with client.get(demo.proxy_url + "/.authshim/session") as r:
                assert r.status == 401
            async with client.get(demo.admin_url + "/admin/stats") as r:
                assert r.status == 200  # the dashboard's listener, loopback only
    finally:
        await demo.close()


def test_the_guide_names_a_command_that_runs() -> None:
    """The demo's guide names authshim so that it runs from here without an activated venv."""
    urls = ("http://legacy", "http://proxy", "http://admin", "sqlite:///x.db")
    demo = Demo(*[None] * 3, *urls)  # type: ignore[arg-type]
    commands = re.findall(r":\s+(\S+) (?:stats|users|mode) ", guide(demo))
    assert len(commands) == 4
    for command in commands:
        found = shutil.which(command)
        assert found is not None, f"{command} is not found from {os.getcwd()}"
        assert os.path.samefile(found, Path(sys.prefix) / "bin" / "authshim")


async def test_the_demo_removes_its_folder_on_sigterm() -> None:
    """`authshim demo` stopped by SIGTERM exits 0 and removes its temporary folder and store."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "demo", "--port", "0", "--legacy-port", "0",
        "--admin-port", "0", cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = ""
        while not line.startswith("  store:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "the demo ended before printing its guide"
        store = Path(line.split("sqlite:///", 1)[1].strip())
        assert store.parent.is_dir()
        while "Press Ctrl-C" not in (await proc.stdout.readline()).decode():
            pass
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert not store.parent.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _postgres_config(tmp_path: Path) -> str:
    path = tmp_path / "pg.toml"
    text = (ROOT / "examples" / "authshim.toml").read_text()
    path.write_text(text.replace('"sqlite:///./authshim.db"', '"postgresql://db/authshim"'))
    return str(path)


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_missing_store_driver_is_a_config_problem(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A PostgreSQL store without asyncpg: check-config and serve exit 2 naming store.url."""
    monkeypatch.setenv("AUTHSHIM_SECRET", "x" * 40)
    monkeypatch.setenv("LEGACY_LOOKUP_AUTH", "Bearer x")
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    argv = [command, _postgres_config(tmp_path)] if command == "check-config" else [
        command, "--config", _postgres_config(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "store.url: a PostgreSQL store needs asyncpg" in err and "Traceback" not in err


async def _check_connect(config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "check-config", str(config), "--connect",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "AUTHSHIM_SECRET": "x" * 40, "LEGACY_LOOKUP_AUTH": "Bearer x"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err, err
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _example_at(tmp_path: Path, legacy_url: str) -> Path:
    text = (ROOT / "examples" / "authshim.toml").read_text()
    text = text.replace("http://127.0.0.1:8000", legacy_url)
    text = text.replace('"sqlite:///./authshim.db"', f'"sqlite:///{tmp_path / "a.db"}"')
    path = tmp_path / "a.toml"
    path.write_text(text)
    return path


async def test_check_config_connect_says_what_answered(
    legacy_server: TestServer, tmp_path: Path
) -> None:
    """check-config --connect tries the store, the upstream and the look-up: all answered."""
    url = str(legacy_server.make_url("")).rstrip("/")
    status, out = await _check_connect(_example_at(tmp_path, url))
    lines = out.splitlines()
    assert lines[0] == "ok" and status == 0, out
    store = f"sqlite:///{tmp_path / 'a.db'}"
    assert lines[1] == f"store: {store}: reached, no store yet (serve creates it)"
    assert re.fullmatch(rf"upstream: {url}: answered \d+", lines[2])
    assert lines[3] == "lookup: answered not found for a made-up address, as it should"
    assert not (tmp_path / "a.db").exists()  # nothing created


async def test_check_config_connect_names_what_failed(
    legacy: FakeLegacy, legacy_server: TestServer, tmp_path: Path
) -> None:
    """check-config --connect exits 1 naming the upstream that did not answer and the look-up."""
    legacy.lookup_status = 500
    url = str(legacy_server.make_url("")).rstrip("/")
    config = _example_at(tmp_path, url)
    closed = f"http://127.0.0.1:{free_port()}"
    config.write_text(config.read_text().replace(f'url = "{url}"', f'url = "{closed}"', 1))
    status, out = await _check_connect(config)
    assert status == 1
    assert f"upstream: {closed}: FAILED: ClientConnectorError" in out
    assert "lookup: FAILED:" in out


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    """`authshim users list | head -0`: the closed pipe ends the command quietly (exit 141)."""
    store = tmp_path / "a.db"
    asyncio.run(admin_seed_store(f"sqlite:///{store}"))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "proxy.cli", "users", "list", "--store", f"sqlite:///{store}"],
            cwd=ROOT, stdout=write, stderr=subprocess.PIPE, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write)
    assert done.stderr == b"" and done.returncode == 141


async def admin_seed_store(url: str) -> None:
    store = create_store(url)
    await store.open()
    await store.close()
    await admin_seed.seed(url, 50)
