"""``authshim rules test`` and the built-in example rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.cli import main
from proxy.rules import builtin
from store.base import NewUser
from store.factory import create_store

PROFILE = {"id": 7, "email": "eve@corp.example", "username": "eve", "roles": ["staff"],
           "status": "suspended"}  # fmt: skip


@pytest.fixture
async def config_file(tmp_path: Path) -> Path:
    """A config whose store holds eve, with a deny-by-domain and a groups rule."""
    url = f"sqlite:///{tmp_path / 'authshim.db'}"
    store = create_store(url)
    await store.open()
    await store.insert_user(NewUser("eve@corp.example", "eve", "$argon2id$x", PROFILE, "7"))
    await store.close()
    path = tmp_path / "authshim.toml"
    path.write_text(f"""
[upstream]
url = "http://127.0.0.1:9"
[store]
url = "{url}"
[session]
secret = "test-secret-0123456789-abcdefghijklmnop"
[[rules]]
name = "groups"
call = "proxy.rules.builtin:groups_header"
identity_headers = ["X-Forwarded-Groups"]
options = {{ field = "/roles" }}
[[rules]]
name = "domains"
call = "proxy.rules.builtin:deny_email_domain"
options = {{ domains = ["corp.example"], message = "corp users use SSO" }}
""")
    return path


def test_rules_test_prints_each_rules_answer(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each rule's answer is a JSON line, then the verdict; a deny exits 1."""
    status = main(["rules", "test", "--event", "login", "--user", "EVE@corp.example",
                   "--config", str(config_file)])  # fmt: skip
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert lines[0]["rule"] == "groups"
    assert lines[0]["answer"]["identity"] == {"X-Forwarded-Groups": "staff"}
    assert lines[1]["outcome"] == "deny" and lines[1]["answer"]["message"] == "corp users use SSO"
    assert lines[2]["verdict"]["denied_by"] == "domains"


def test_rules_test_names_an_unknown_user(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user the store does not hold: exit 3, nothing run."""
    assert main(["rules", "test", "--user", "nobody", "--config", str(config_file)]) == 3
    assert "no stored user" in capsys.readouterr().err


def _context(profile: dict[str, Any], email: str = "eve@corp.example") -> dict[str, Any]:
    return {"user": {"email": email, "profile": profile}}


def test_deny_email_domain_denies_only_the_listed_domains() -> None:
    """The domain is compared without case; another domain is allowed."""
    options = {"domains": ["Corp.Example"]}
    assert builtin.deny_email_domain(_context({}), options) is not None
    assert builtin.deny_email_domain(_context({}, "eve@other.example"), options) is None


def test_deny_profile_field_denies_the_listed_values() -> None:
    """A profile value at the pointer that is listed denies; others allow."""
    options = {"field": "/status", "values": ["suspended"]}
    assert builtin.deny_profile_field(_context(PROFILE), options) == {
        "deny": "this account may not log in here"}  # fmt: skip
    assert builtin.deny_profile_field(_context({"status": "ok"}), options) is None


async def test_groups_header_maps_roles() -> None:
    """Roles are mapped through the table, de-duplicated, comma-separated."""
    options = {"field": "/roles", "map": {"staff": "employees", "ops": "employees"}}
    answer = await builtin.groups_header(_context({"roles": ["staff", "ops", "x"]}), options)
    assert answer == {"identity": {"X-Forwarded-Groups": "employees,x"}}
