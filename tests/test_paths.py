"""Routes by their meaning, not their spelling: every spelling of an intercepted path that a
legacy server would serve as that path is intercepted, or refused, never forwarded raw."""

from __future__ import annotations

import asyncio

import pytest

from proxy.modes import write_mode
from proxy.paths import Unfoldable, canonical, script_prefixes
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy


@pytest.mark.parametrize(
    ("target", "folded"),
    [
        ("/api/login", "/api/login"),
        ("/api/login/", "/api/login"),
        ("/./api/login", "/api/login"),
        ("/x/../api/login", "/api/login"),
        ("/%2e/api/login", "/api/login"),
        ("/%2E%2E/x/../api/login".replace("/%2E%2E", ""), "/api/login"),
        ("//api//login", "/api/login"),
        ("/api/%6cogin", "/api/login"),
        ("/api/%6Cogin?x=1", "/api/login"),
        ("/api/login;jsessionid=0", "/api/login"),
        ("/api;x=1/login", "/api/login"),
        ("/api/login/.", "/api/login"),
        ("/api/./login", "/api/login"),
        ("/api/login%3bx", "/api/login"),
        ("http://example.com/api/login", "/api/login"),
        ("/API/Login", "/API/Login"),
    ],
)
def test_spellings_fold_to_one_path(target: str, folded: str) -> None:
    """Dot segments, escapes of plain characters, doubled slashes and path parameters fold."""
    assert canonical(target) == folded


@pytest.mark.parametrize(
    ("target", "folded"),
    [("/API/Login", "/api/login"), ("/api/login.aspx.", "/api/login.aspx"),
     ("/api/LOGIN.ASPX%20", "/api/login.aspx"), ("/api/login.aspx::$DATA", "/api/login.aspx")],
)  # fmt: skip
def test_a_case_insensitive_server_folds_case_and_windows_tails(target: str, folded: str) -> None:
    """With upstream.case_insensitive_paths (IIS), case, trailing dots and spaces and ::$DATA."""
    assert canonical(target, case_insensitive=True) == folded


@pytest.mark.parametrize(
    "target",
    ["/api%2flogin", "/api%2Flogin", "/api%5clogin", "/api\\login", "/api/login%00",
     "/../api/login", "/api/lo%zzgin", "/api/%ff%fe", "/api/%256cogin", "/api/login%3f",
     "/api/login%23x", "/api/%c0%af/login", "/x//../api/login", "/x/..;y/api/login",
     "/api/login%0a"],
)  # fmt: skip
def test_spellings_no_two_servers_read_alike_are_unfoldable(target: str) -> None:
    """Encoded slashes and backslashes, NUL, climbing above the root, bad escapes, non-UTF-8."""
    with pytest.raises(Unfoldable):
        canonical(target)


def test_a_scripts_path_info_tail_names_the_script() -> None:
    """PHP runs /wp-login.php/x as wp-login.php; a directory is no script."""
    assert script_prefixes("/wp-login.php/x/y") == ["/wp-login.php"]
    assert script_prefixes("/a/b") == []


SPELLINGS = ["/./api/login", "/x/../api/login", "/%2e/api/login", "/api/login;jsessionid=0",
             "//api//login", "/api/%6cogin", "/api/login/"]  # fmt: skip


async def login_at(proxy: Proxy, target: str, email: str, password: str) -> int:
    """POST a JSON login to a raw request target (no client-side normalising)."""
    assert proxy.server.port is not None
    body = f'{{"email":"{email}","password":"{password}"}}'.encode()
    head = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("target", SPELLINGS)
async def test_every_spelling_of_the_login_is_intercepted_and_captured(
    proxy: Proxy, legacy: FakeLegacy, target: str
) -> None:
    """Forwarded to the legacy app under the route's own path, and captured."""
    assert await login_at(proxy, target, "bob@example.com", "builder-22") == 200
    assert [s.path for s in legacy.logins()] == ["/api/login"]
    assert await proxy.svc.store.find_user("bob@example.com") is not None


@pytest.mark.parametrize(
    "target",
    [*SPELLINGS, "/api%2flogin", "/api/login%00", "/API/Login", "/api/login.", "/Api/LOGIN/"],
)
async def test_in_cutover_no_spelling_reaches_the_legacy_login(
    proxy: Proxy, legacy: FakeLegacy, target: str
) -> None:
    """An unmigrated user's right password is refused by authshim (401) or the spelling is
    refused (400); the legacy app never sees a login."""
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    assert await login_at(proxy, target, "carol@example.com", "singer-333") in (400, 401)
    assert legacy.logins() == []


async def test_a_case_insensitive_legacy_server(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """With upstream.case_insensitive_paths, /API/Login is the login route."""
    proxy = await start_proxy(lambda raw: raw["upstream"].update(case_insensitive_paths=True))
    assert await login_at(proxy, "/API/Login", "bob@example.com", "builder-22") == 200
    assert [s.path for s in legacy.logins()] == ["/api/login"]


async def test_a_login_with_a_body_under_another_method_or_credentials_in_a_get_is_refused(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """PUT with a body, and GET with credentials in the query, never reach a login path."""
    async with proxy.client.put(
        proxy.url("/api/login"), json={"email": "bob@example.com", "password": "builder-22"}
    ) as response:
        assert response.status == 400
    async with proxy.client.get(proxy.url("/accounts/login/?username=bob&password=x")) as page:
        assert page.status == 400
    async with proxy.client.get(proxy.url("/accounts/login/?next=/private/")) as page:
        assert page.status == 200  # the login page itself still renders
    assert legacy.logins() == []


async def test_unfoldable_paths_elsewhere_pass_through(proxy: Proxy, legacy: FakeLegacy) -> None:
    """An encoded slash in a path that names no intercepted route goes on byte for byte."""
    async with proxy.client.get(proxy.url("/files/a%2Fb.txt")) as response:
        assert response.status == 200
    assert legacy.seen[-1].path == "/files/a%2Fb.txt"
