"""The admin API: auth, users, PATCH/DELETE, sessions, mode, stats, all against openapi.json."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from proxy.admin.app import create_admin_app
from tests.fixtures.admin import SPEC, TOKEN, Admin, StartAdmin, conforms
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import StartProxy


async def _migrate(admin: Admin, *names: str) -> dict[str, str]:
    """Log each legacy user in once through the proxy; return their authshim ids."""
    passwords = {"bob": "builder-22", "carol": "singer-333", "Alice": "wonderland-1"}
    ids = {}
    for name in names:
        response = await admin.proxy.form_login(name, passwords[name])
        assert response.status == 302
        user = await admin.proxy.svc.store.find_user(name)
        assert user is not None
        ids[name] = user.id
    admin.proxy.client.cookie_jar.clear()
    return ids


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()},
        {"Authorization": "Basic !!!"},
    ],
)
async def test_requests_without_the_right_token_are_refused(
    admin: Admin, headers: dict[str, str]
) -> None:
    """No token, a wrong token or a wrong Basic password: 401 on every route, JSON body."""
    async with aiohttp.ClientSession(headers=headers) as anonymous:
        for path in ("/admin/users", "/admin/stats", "/metrics", "/admin/export", "/"):
            async with anonymous.get(admin.url(path)) as response:
                assert response.status == 401, path
                assert "realm=" in response.headers["WWW-Authenticate"]
                conforms(await response.json(), "Error")


async def test_the_right_token_is_accepted_as_bearer_or_basic(admin: Admin) -> None:
    """The token works as a bearer token and as an HTTP Basic password (the browser's way)."""
    assert (await admin.call("GET", "/admin/mode"))[0] == 200
    basic = "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    async with aiohttp.ClientSession(headers={"Authorization": basic}) as browser:
        async with browser.get(admin.url("/admin/mode")) as response:
            assert response.status == 200


async def test_cross_site_writes_are_refused(admin: Admin) -> None:
    """A write from another origin is refused even with the token; reads are not."""
    status, body = await admin.call(
        "PUT", "/admin/mode", json={"mode": "cutover"}, headers={"Origin": "https://evil.test"}
    )
    assert status == 403 and body["error"] == "forbidden"
    assert (await admin.call("GET", "/admin/mode"))[1] == {"mode": "migrate"}


async def test_a_non_loopback_admin_without_token_refuses_to_start(
    start_proxy: StartProxy,
) -> None:
    """run_admin_site will not open an unauthenticated admin API to other hosts."""
    from dataclasses import replace

    from proxy.admin.app import run_admin_site
    from proxy.errors import ConfigError

    proxy = await start_proxy()
    config = proxy.svc.config
    config = replace(config, admin=replace(config.admin, host="0.0.0.0", token=None))
    with pytest.raises(ConfigError, match=r"admin\.token"):
        await run_admin_site(proxy.server.app, config)


async def test_users_list_search_and_show(admin: Admin) -> None:
    """Migrated users are listed, found by prefix and legacy id, and shown without a hash."""
    ids = await _migrate(admin, "bob", "carol")
    status, page = await admin.call("GET", "/admin/users")
    assert status == 200 and page["next_page"] is None
    conforms(page, "UserPage")
    assert [u["username"] for u in page["users"]] == ["bob", "carol"]
    status, page = await admin.call("GET", "/admin/users", params={"q": "CAR"})
    assert [u["id"] for u in page["users"]] == [ids["carol"]]
    status, page = await admin.call("GET", "/admin/users", params={"q": "2"})
    assert [u["id"] for u in page["users"]] == [ids["bob"]]
    status, page = await admin.call("GET", "/admin/users", params={"per_page": "1"})
    assert len(page["users"]) == 1 and page["next_page"]
    _, rest = await admin.call(
        "GET", "/admin/users", params={"per_page": "1", "page": page["next_page"]}
    )
    assert [u["id"] for u in rest["users"]] == [ids["carol"]]
    status, user = await admin.call("GET", f"/admin/users/{ids['bob']}")
    assert status == 200 and user["email"] == "bob@example.com"
    conforms(user, "User")
    assert "password_hash" not in user and "argon2" not in str(user)
    assert (await admin.call("GET", "/admin/users/nobody"))[0] == 404


@pytest.mark.parametrize(
    "params",
    [
        {"per_page": "0"},
        {"per_page": "many"},
        {"source": "martians"},
        {"migrated_since": "last tuesday"},
        {"page": "not-a-token"},
        {"colour": "blue"},
        {"q": "x" * 300},
    ],
)
async def test_bad_listing_parameters_get_a_400(admin: Admin, params: dict[str, str]) -> None:
    """Every malformed parameter is a 400 with a JSON message naming it."""
    status, body = await admin.call("GET", "/admin/users", params=params)
    assert status == 400 and body["error"] == "bad_request"
    conforms(body, "Error")


async def test_a_listing_page_token_is_refused_by_a_search(admin: Admin) -> None:
    """A page token only continues the kind of query it came from."""
    await _migrate(admin, "bob", "carol")
    _, listing = await admin.call("GET", "/admin/users", params={"per_page": "1"})
    params = {"q": "b", "page": listing["next_page"]}
    status, body = await admin.call("GET", "/admin/users", params=params)
    assert status == 400 and "another query" in body["message"]


async def test_patch_changes_email_and_refuses_conflicts(admin: Admin) -> None:
    """PATCH changes an email; another user's email is a 409; a bad one a 400."""
    ids = await _migrate(admin, "bob", "carol")
    path = f"/admin/users/{ids['bob']}"
    status, user = await admin.call("PATCH", path, json={"email": "Robert@Example.com"})
    assert status == 200 and user["email"] == "robert@example.com"
    assert (await admin.proxy.svc.store.find_user("robert@example.com")) is not None
    status, body = await admin.call("PATCH", path, json={"email": "carol@example.com"})
    assert status == 409 and body["field"] == "email" and body["where"] == "store"
    conforms(body, "Conflict")
    status, body = await admin.call("PATCH", path, json={"username": "carol"})
    assert status == 409 and body["field"] == "username"
    for bad in ({"email": "not-an-email"}, {"email": 5}, {"shoe_size": 9}, {}, {"blocked": "yes"}):
        status, body = await admin.call("PATCH", path, json=bad)
        assert status == 400, bad
    status, body = await admin.call("PATCH", path, data=b"[1, 2]")
    assert status == 400 and "JSON object" in body["message"]


async def test_patch_blocks_unblocks_and_sets_a_password(admin: Admin) -> None:
    """Blocking refuses the login; a new password works and ends the old sessions."""
    ids = await _migrate(admin, "bob")
    path = f"/admin/users/{ids['bob']}"
    proxy = admin.proxy
    assert (await admin.call("PATCH", path, json={"blocked": True}))[1]["blocked"] is True
    refused = await proxy.form_login("bob", "builder-22")
    assert refused.headers["Location"].startswith("/accounts/login/?error")
    assert (await admin.call("PATCH", path, json={"blocked": False}))[1]["blocked"] is False
    proxy.client.cookie_jar.clear()
    ok = await proxy.form_login("bob", "builder-22")
    assert ok.headers["Location"] == "/private/"
    async with proxy.client.get(proxy.url("/.authshim/session")) as session:
        assert session.status == 200

    status, body = await admin.call("PATCH", path, json={"password": "short"})
    assert status == 400 and "at least" in body["message"]
    status, _ = await admin.call("PATCH", path, json={"password": "a-brand-new-passphrase"})
    assert status == 200
    async with proxy.client.get(proxy.url("/.authshim/session")) as session:
        assert session.status == 401  # the old session ended with the new password
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "a-brand-new-passphrase")).headers["Location"] == (
        "/private/"
    )


async def test_revoking_sessions_logs_the_user_out(admin: Admin) -> None:
    """POST sessions/revoke ends the user's live session."""
    ids = await _migrate(admin, "carol")
    proxy = admin.proxy
    await proxy.form_login("carol", "singer-333")
    status, body = await admin.call("POST", f"/admin/users/{ids['carol']}/sessions/revoke")
    assert status == 200 and body["session_epoch"] == 1
    async with proxy.client.get(proxy.url("/.authshim/session")) as session:
        assert session.status == 401
    assert (await admin.call("POST", "/admin/users/nobody/sessions/revoke"))[0] == 404


async def test_a_deleted_user_migrates_again_at_the_next_login(
    admin: Admin, legacy: FakeLegacy
) -> None:
    """DELETE removes the user; their next login goes to the legacy app and is captured anew."""
    ids = await _migrate(admin, "bob")
    assert (await admin.call("DELETE", f"/admin/users/{ids['bob']}"))[0] == 204
    assert (await admin.call("GET", f"/admin/users/{ids['bob']}"))[0] == 404
    assert (await admin.call("DELETE", f"/admin/users/{ids['bob']}"))[0] == 404
    before = len(legacy.logins())
    again = await _migrate(admin, "bob")
    assert len(legacy.logins()) == before + 1 and again["bob"] != ids["bob"]


async def test_a_mode_switch_is_seen_by_running_proxies(
    admin: Admin, start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """PUT /admin/mode switches this proxy at once and another replica within mode_poll."""
    replica = await start_proxy()
    status, body = await admin.call("PUT", "/admin/mode", json={"mode": "cutover"})
    assert status == 200 and body == {"mode": "cutover"}
    assert admin.proxy.svc.cutover
    for _ in range(50):
        if replica.svc.cutover:
            break
        await asyncio.sleep(0.05)
    assert replica.svc.cutover
    before = len(legacy.logins())
    refused = await replica.form_login("carol", "singer-333")  # unmigrated: refused locally
    assert refused.headers["Location"].startswith("/accounts/login/?error")
    assert len(legacy.logins()) == before
    assert (await admin.call("GET", "/admin/mode"))[1] == {"mode": "cutover"}
    for bad in ({"mode": "chaos"}, {}, {"mode": "migrate", "extra": 1}):
        assert (await admin.call("PUT", "/admin/mode", json=bad))[0] == 400


async def test_stats_count_outcomes_and_readiness(admin: Admin, legacy: FakeLegacy) -> None:
    """Stats show users, per-day series, login outcomes, rejections and readiness."""
    await _migrate(admin, "bob")
    legacy.profile_override = {"id": 3, "username": "carol"}  # no email: capture rejected
    await admin.proxy.form_login("carol", "singer-333")
    legacy.profile_override = None
    await admin.proxy.form_login("bob", "wrong-password")
    await admin.flush()
    status, stats = await admin.call("GET", "/admin/stats", params={"days": "7"})
    assert status == 200
    conforms(stats, "Stats")
    assert stats["users"] == {"total": 1, "by_source": {"login": 1}}
    assert len(stats["migrated_per_day"]) == 7
    assert stats["migrated_per_day"][-1]["migrated"] == 1
    assert stats["migrated_per_day"][-1]["cumulative"] == 1
    assert stats["logins"]["by_outcome"] == {"captured": 1, "legacy_ok": 1, "local_failed": 1}
    assert stats["logins"]["local"] == 1 and stats["logins"]["forwarded"] == 2
    assert stats["captures_rejected"] == {"no_email": 1}
    # Two users (bob migrated, carol not): each counted once, whatever names they have.
    assert stats["readiness"] == {"days": 7, "active": 2, "migrated": 1, "share": 0.5}
    for bad in ({"days": "0"}, {"days": "x"}, {"weeks": "1"}):
        assert (await admin.call("GET", "/admin/stats", params=bad))[0] == 400


async def test_every_route_is_in_the_openapi_file(admin: Admin) -> None:
    """openapi.json documents exactly the routes the admin app serves."""
    app = create_admin_app(admin.proxy.svc.config, admin.proxy.server.app)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {
        (method, path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    }
    assert served == documented


def _params(path: str, method: str) -> set[str]:
    item: dict[str, Any] = SPEC["paths"][path]
    return {p["name"] for p in item[method].get("parameters", []) if p["in"] == "query"}


async def test_the_documented_parameters_are_the_accepted_ones(admin: Admin) -> None:
    """Every documented query parameter is accepted; an undocumented one is refused."""
    for name in _params("/admin/users", "get"):
        value = {"per_page": "5", "source": "login", "migrated_since": "2024-01-01"}.get(name, "")
        assert (await admin.call("GET", "/admin/users", params={name: value}))[0] == 200, name
    assert _params("/admin/stats", "get") == {"days"}


async def test_patch_refuses_an_email_of_another_legacy_user(
    start_admin: StartAdmin, legacy: FakeLegacy
) -> None:
    """With [lookup], an email that belongs to an unmigrated legacy user is a 409 (legacy)."""
    from tests.accounts import LOOKUP_AUTH

    def lookup(raw: dict[str, Any]) -> None:
        upstream = raw["upstream"]["url"]
        raw["lookup"] = {
            "by_email": f"{upstream}/internal/users?email={{email}}",
            "by_username": f"{upstream}/internal/users?username={{username}}",
            "headers": {"Authorization": LOOKUP_AUTH},
        }

    legacy.lookup_auth = LOOKUP_AUTH
    admin = await start_admin(lookup)
    ids = await _migrate(admin, "bob")
    path = f"/admin/users/{ids['bob']}"
    status, body = await admin.call("PATCH", path, json={"email": "carol@example.com"})
    assert status == 409 and body["where"] == "legacy" and body["field"] == "email"
    status, body = await admin.call("PATCH", path, json={"email": "bobby@example.com"})
    assert status == 200 and body["email"] == "bobby@example.com"


async def test_patch_requires_a_new_password_at_the_next_login(admin: Admin) -> None:
    """must_change_password: the right password then gets the must-change step, no session;
    false lifts it again."""
    ids = await _migrate(admin, "bob")
    path = f"/admin/users/{ids['bob']}"
    status, user = await admin.call("PATCH", path, json={"must_change_password": True})
    assert status == 200
    conforms(user, "User")
    proxy = admin.proxy
    proxy.client.cookie_jar.clear()
    answer = await proxy.form_login("bob", "builder-22")
    assert answer.status == 403 and "Choose a new password" in await answer.text()
    assert proxy.session_cookie() is None
    assert (await admin.call("PATCH", path, json={"must_change_password": "yes"}))[0] == 400
    assert (await admin.call("PATCH", path, json={"must_change_password": False}))[0] == 200
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "builder-22")).status == 302
