"""The authshim command, called through main(argv)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from proxy.cli import main
from proxy.demo import guide, start_demo

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


def test_mode_shows_and_switches(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`authshim mode` shows migrate, `mode cutover` switches and shows it."""
    assert main(["mode", "--store", sqlite_url]) == 0
    assert main(["mode", "cutover", "--store", sqlite_url]) == 0
    assert main(["mode", "--store", sqlite_url]) == 0
    assert capsys.readouterr().out.split() == ["migrate", "cutover", "cutover"]


def test_mode_reads_the_store_from_a_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`authshim mode --config` needs only [store] and [migration], no secrets."""
    path = tmp_path / "a.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n[migration]\nmode = "cutover"\n')
    assert main(["mode", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "cutover"


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
