"""The admin listener's Host check (proxy/admin/hosts.py): DNS rebinding is refused."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from proxy.admin.hosts import host_name
from proxy.config import parse_config
from proxy.errors import ConfigError
from tests.fixtures.admin import Admin, StartAdmin
from tests.fixtures.proxy import EXAMPLE, SECRET

OTHER = "evil.example"


def no_token(raw: dict[str, Any]) -> None:
    raw["admin"].pop("token")


def allow(*hosts: str, token: bool = True) -> Any:
    def change(raw: dict[str, Any]) -> None:
        raw["admin"]["allowed_hosts"] = list(hosts)
        if not token:
            raw["admin"].pop("token")

    return change


async def _status(admin: Admin, host: str, method: str = "GET", path: str = "/admin/mode") -> int:
    async with admin.client.request(method, admin.url(path), headers={"Host": host}) as response:
        await response.read()
        return response.status


async def _raw(admin: Admin, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", admin.server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_without_a_token_another_host_gets_nothing(start_admin: StartAdmin) -> None:
    """No token: a request naming another site (DNS rebinding) is refused with 421 and JSON,
    before the export or a password change runs."""
    admin = await start_admin(no_token)
    response = await admin.proxy.form_login("bob", "builder-22")
    assert response.status == 302
    user = await admin.proxy.svc.store.find_user("bob")
    assert user is not None
    async with admin.client.get(admin.url("/admin/export"), headers={"Host": OTHER}) as answer:
        assert answer.status == 421
        body = await answer.json()
        assert body["error"] == "misdirected_request"
    async with admin.client.patch(
        admin.url(f"/admin/users/{user.id}"),
        json={"password": "taken-over-by-evil-1"},
        headers={"Host": f"{OTHER}:8081"},
    ) as answer:
        assert answer.status == 421
    after = await admin.proxy.svc.store.get_user(user.id)
    assert after is not None and after.password_hash == user.password_hash


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8081", "localhost.", "127.0.0.1", "127.0.0.1:1", "[::1]:8"]
)
async def test_without_a_token_loopback_hosts_are_answered(
    start_admin: StartAdmin, host: str
) -> None:
    """No token: localhost, 127.0.0.1 and [::1], with any port, are answered."""
    admin = await start_admin(no_token)
    assert await _status(admin, host) == 200


@pytest.mark.parametrize(
    "host", ["localhost.evil.example", "127.0.0.1.evil.example", "x.localhost", "0.0.0.0", ""]
)
async def test_without_a_token_look_alike_hosts_are_refused(
    start_admin: StartAdmin, host: str
) -> None:
    """No token: names that only look like loopback, *.localhost and an empty Host: 421."""
    admin = await start_admin(no_token)
    assert await _status(admin, host) == 421


async def test_without_a_token_missing_host_and_absolute_targets(start_admin: StartAdmin) -> None:
    """No token: a request without Host, or with an absolute target naming another host, is
    refused; an absolute target naming localhost is answered."""
    admin = await start_admin(no_token)
    missing = await _raw(admin, b"GET /admin/mode HTTP/1.0\r\n\r\n")
    assert missing.split(b" ", 2)[1] == b"421"
    absolute = await _raw(
        admin,
        b"GET http://evil.example/admin/export HTTP/1.1\r\nHost: localhost\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert absolute.split(b" ", 2)[1] == b"421"
    assert b"password_hash" not in absolute
    local = await _raw(
        admin,
        b"GET http://localhost:1/admin/mode HTTP/1.1\r\nHost: localhost\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert local.split(b" ", 2)[1] == b"200"


async def test_without_a_token_the_allowlist_adds_names(start_admin: StartAdmin) -> None:
    """No token: admin.allowed_hosts adds names; loopback ones still work, others do not."""
    admin = await start_admin(allow("admin.internal", token=False))
    assert await _status(admin, "admin.internal:8081") == 200
    assert await _status(admin, "Admin.Internal") == 200
    assert await _status(admin, "localhost") == 200
    assert await _status(admin, OTHER) == 421


async def test_with_a_token_any_host_is_answered(start_admin: StartAdmin) -> None:
    """With a token and no allowlist, the token is the defence: any Host is answered."""
    admin = await start_admin()
    assert await _status(admin, "admin.example.com") == 200


async def test_with_a_token_the_allowlist_restricts_hosts(start_admin: StartAdmin) -> None:
    """With a token and admin.allowed_hosts, other hosts are refused before the token check."""
    admin = await start_admin(allow("admin.example.com"))
    assert await _status(admin, "admin.example.com") == 200
    assert await _status(admin, "127.0.0.1") == 200
    assert await _status(admin, OTHER) == 421
    assert await _status(admin, OTHER, "GET", "/admin/export") == 421


def test_host_name_reads_a_host_value() -> None:
    """Ports, brackets, case and a final dot go; a user part or junk after the port is None."""
    assert host_name("LocalHost:8081") == "localhost"
    assert host_name("[::1]:80") == "::1"
    assert host_name("localhost.") == "localhost"
    assert host_name("a@localhost") is None
    assert host_name("localhost:80x") is None
    assert host_name("[::1") is None


@pytest.mark.parametrize("value", [["admin.example.com:8081"], ["http://x"], [5], "admin.example"])
def test_allowed_hosts_must_be_host_names(value: Any) -> None:
    """admin.allowed_hosts refuses ports, URLs and non-strings, naming the key."""
    raw = json.loads(json.dumps(EXAMPLE))
    raw["admin"] = {"allowed_hosts": value}
    with pytest.raises(ConfigError, match=r"admin\.allowed_hosts"):
        parse_config(raw, {"AUTHSHIM_SECRET": SECRET})
