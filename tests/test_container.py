"""The container story without a container engine: the Dockerfile's entry point, environment
and health check, run here as written; the compose example's config and legacy service.

(.ci/image builds and runs the real image where an engine can run containers.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.fixtures.proxy import SECRET
from tests.test_server import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "examples" / "compose"


def dockerfile() -> tuple[dict[str, str], list[str], list[str]]:
    """The Dockerfile's ENV, CMD and HEALTHCHECK command (exec forms)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, re.M):
        env.update(re.findall(r"(\w+)=(\S+)", line))
    cmd = json.loads(re.search(r"^CMD (\[.+\])$", text, re.M).group(1))  # type: ignore[union-attr]
    check = re.search(r"^HEALTHCHECK .*? CMD (\[.+\])$", text, re.M)
    assert check is not None, "the Dockerfile has no HEALTHCHECK"
    return env, cmd, json.loads(check.group(1))


def _local(argv: list[str]) -> list[str]:
    """The image's command run from this venv: ``authshim`` and ``python`` are its own."""
    tools = {"authshim": str(Path(sys.prefix) / "bin" / "authshim"), "python": sys.executable}
    return [tools.get(argv[0], argv[0]), *argv[1:]]


async def _healthy(check: list[str], env: dict[str, str], proc: asyncio.subprocess.Process) -> None:
    for _ in range(200):
        assert proc.returncode is None, "authshim exited"
        probe = await asyncio.create_subprocess_exec(
            *_local(check), env=env, stderr=asyncio.subprocess.DEVNULL
        )
        if await probe.wait() == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the health check never passed")


@pytest.fixture
async def image_env(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The image's environment with a config at $AUTHSHIM_CONFIG and a free port."""
    env, _, _ = dockerfile()
    assert env["AUTHSHIM_CONFIG"] == "/etc/authshim/authshim.toml"
    config = tmp_path / "authshim.toml"  # stands for /etc/authshim/authshim.toml
    config.write_text(
        '[upstream]\nurl = "http://127.0.0.1:9"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "data" / "authshim.db"}"\n'
        '[session]\nsecret = "env:AUTHSHIM_SECRET"\n'
    )
    host = env["AUTHSHIM_LISTEN"].rpartition(":")[0]
    yield {
        **os.environ, **env, "AUTHSHIM_CONFIG": str(config), "AUTHSHIM_SECRET": SECRET,
        "AUTHSHIM_LISTEN": f"{host}:{free_port()}",
    }  # fmt: skip


async def test_the_image_entry_point_serves_and_turns_healthy(
    image_env: dict[str, str], tmp_path: Path
) -> None:
    """The image's CMD with its ENV serves on every address, and its HEALTHCHECK passes."""
    _, cmd, check = dockerfile()
    assert image_env["AUTHSHIM_LISTEN"].startswith("0.0.0.0:")  # reachable from outside
    proc = await asyncio.create_subprocess_exec(
        *_local(cmd), env=image_env, cwd=tmp_path, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await _healthy(check, image_env, proc)
    finally:
        proc.terminate()
        assert await proc.wait() == 0


def test_the_compose_config_loads_as_the_image_runs_it() -> None:
    """examples/compose: its config loads with the image's and compose's environment."""
    compose = (COMPOSE / "compose.yaml").read_text()
    env, _, _ = dockerfile()
    assert f"./authshim.toml:{env['AUTHSHIM_CONFIG']}:ro" in compose
    env |= {"AUTHSHIM_SECRET": SECRET, "AUTHSHIM_ADMIN_TOKEN": "t" * 20}
    env["AUTHSHIM_ADMIN_LISTEN"] = re.search(r"AUTHSHIM_ADMIN_LISTEN: (\S+)", compose).group(1)  # type: ignore[union-attr]
    config = load_config(COMPOSE / "authshim.toml", env=env)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 8080)
    assert (config.admin.host, config.admin.port) == ("0.0.0.0", 8081)
    assert config.upstream.url == "http://legacy:8000"
    assert config.store.url.startswith("postgresql://authshim:authshim@postgres:5432/")
    del env["AUTHSHIM_ADMIN_TOKEN"]
    with pytest.raises(ConfigError, match=r"admin\.token"):
        load_config(COMPOSE / "authshim.toml", env=env)


async def test_the_compose_legacy_service_runs() -> None:
    """The compose file's legacy app command serves the demo site's login page."""
    compose = (COMPOSE / "compose.yaml").read_text()
    command = json.loads(re.search(r"command: (\[.+\])", compose).group(1))  # type: ignore[union-attr]
    port = free_port()
    command[-1] = f"127.0.0.1:{port}"  # the service listens on 0.0.0.0:8000 in its container
    proc = await asyncio.create_subprocess_exec(*_local(command), cwd=ROOT)
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(200):
                try:
                    async with client.get(f"http://127.0.0.1:{port}/accounts/login/") as answer:
                        assert answer.status == 200
                        return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        raise AssertionError("the legacy service never answered")
    finally:
        proc.terminate()
        await proc.wait()
