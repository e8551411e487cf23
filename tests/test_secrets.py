"""Secrets: strong enough at start, never shown, and rotated without logging anyone out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.config import parse_config
from proxy.errors import ConfigError
from proxy.sessions import SessionCodec
from tests.fixtures.proxy import EXAMPLE, SECRET, Proxy, StartProxy

OLD = "old-secret-0123456789-abcdefghijklmnopq"
NEW = "new-secret-0123456789-abcdefghijklmnopq"


def config_with(**session: Any) -> dict[str, Any]:
    raw = copy.deepcopy(EXAMPLE)
    raw["session"].update(session)
    return raw


def test_a_short_session_secret_is_refused() -> None:
    """A session secret under 32 characters stops the config, naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(secret="env:S"), {"S": "x" * 31})
    assert any(p.startswith("session.secret: must be at least 32") for p in caught.value.problems)


def test_a_short_previous_secret_is_refused() -> None:
    """An old secret still verifies sessions, so it must be as long as the current one."""
    with pytest.raises(ConfigError) as caught:
        parse_config(
            config_with(previous_secrets=["env:OLD", "short"]),
            {"AUTHSHIM_SECRET": SECRET, "OLD": OLD},
        )
    assert caught.value.problems == ["session.previous_secrets: [1] must be at least 32 characters"]


def test_a_short_admin_token_is_refused() -> None:
    """The admin token has a minimum length too, and is required off loopback."""
    raw = copy.deepcopy(EXAMPLE)
    raw["admin"] = {"listen": "0.0.0.0:8081", "token": "short"}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {"AUTHSHIM_SECRET": SECRET})
    assert any(p.startswith("admin.token: must be at least") for p in caught.value.problems)
    raw["admin"] = {"listen": "0.0.0.0:8081"}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {"AUTHSHIM_SECRET": SECRET})
    assert any(p.startswith("admin.token: is required") for p in caught.value.problems)


def test_serve_will_not_start_with_a_weak_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``authshim serve`` exits 2 before listening when the secret is too short."""
    config = tmp_path / "authshim.toml"
    config.write_text(
        '[upstream]\nurl = "http://127.0.0.1:1"\n[session]\nsecret = "env:AUTHSHIM_SECRET"\n'
    )
    monkeypatch.setenv("AUTHSHIM_SECRET", "too-short")
    assert main(["serve", "--config", str(config)]) == 2
    assert "session.secret" in capsys.readouterr().err


def test_secrets_are_never_shown() -> None:
    """Neither the config's repr nor its str contains a secret, current or previous."""
    config = parse_config(
        config_with(previous_secrets=["env:OLD"]), {"AUTHSHIM_SECRET": NEW, "OLD": OLD}
    )
    assert NEW not in repr(config) and OLD not in repr(config) and NEW not in str(config)


def test_a_previous_secret_verifies_but_never_signs() -> None:
    """During rotation an old cookie verifies; new cookies verify without the old secret."""
    old_cookie = SessionCodec(OLD, max_age=60).issue("u1", 0)
    rotating = SessionCodec(NEW, max_age=60, previous=[OLD])
    claims = rotating.verify(old_cookie)
    assert claims is not None and claims.user_id == "u1"
    new_cookie = rotating.issue("u1", 0)
    assert SessionCodec(NEW, max_age=60).verify(new_cookie) is not None
    assert SessionCodec(OLD, max_age=60).verify(new_cookie) is None
    assert SessionCodec(NEW, max_age=60).verify(old_cookie) is None  # window over: refused


async def session_status(proxy: Proxy, cookie: str) -> int:
    async with proxy.client.get(
        proxy.url("/.authshim/session"), headers={"Cookie": f"authshim={cookie}"}
    ) as response:
        return response.status


async def test_rotation_across_replicas(start_proxy: StartProxy) -> None:
    """A session from a replica on the old secret is accepted by one that lists it as previous,
    and refused once it is dropped."""
    old = await start_proxy(lambda raw: raw["session"].update(secret=OLD))
    async with old.client.post(
        old.url("/api/login"), json={"email": "bob@example.com", "password": "builder-22"}
    ) as response:
        assert response.status == 200
    cookie = old.session_cookie()
    assert cookie is not None
    rotating = await start_proxy(
        lambda raw: raw["session"].update(secret=NEW, previous_secrets=[OLD])
    )
    rotated = await start_proxy(lambda raw: raw["session"].update(secret=NEW))
    assert await session_status(rotating, cookie) == 200
    assert await session_status(rotated, cookie) == 401
