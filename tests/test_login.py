"""The login flow: capture at the first login, local answers after, cut-over."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from proxy.modes import write_mode
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy


async def json_login(proxy: Proxy, email: str, password: str) -> tuple[int, Any]:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if "json" in response.content_type else text


async def test_first_form_login_is_captured_and_the_second_answered_locally(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """The legacy app sees the first login only; the second is answered from the store."""
    first = await proxy.form_login("bob", "builder-22")
    assert first.status == 302 and first.headers["Location"] == "/"
    assert "sessionid" in first.cookies and proxy.session_cookie()
    user = await proxy.svc.store.find_user("bob")
    assert user is not None and user.legacy_id == "2" and user.source == "login"
    assert user.password_hash.startswith("$argon2id$")
    assert len(legacy.logins()) == 1

    proxy.client.cookie_jar.clear()
    second = await proxy.form_login("bob", "builder-22")
    assert second.status == 302 and second.headers["Location"] == "/private/"
    assert proxy.session_cookie()
    assert len(legacy.logins()) == 1
    await proxy.settled()  # the count is written behind the answer
    user = await proxy.svc.store.find_user("bob")
    assert user is not None and user.login_count == 1


async def test_json_login_captures_the_profile_from_the_answer(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A JSON login is captured from the answer's pointer and answered locally with the profile."""
    status, body = await json_login(proxy, "carol@example.com", "singer-333")
    assert status == 200 and body["token"] == "t-carol"  # the legacy answer, unchanged
    status, body = await json_login(proxy, "Carol@Example.com ", "singer-333")
    assert status == 200
    assert body == {
        "ok": True,
        "user": {"id": 3, "username": "carol", "email": "carol@example.com"},
    }
    assert len(legacy.logins()) == 1


async def test_wrong_password_after_migration_is_refused_locally(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A migrated user's wrong password gets the failure answer; the legacy app never sees it."""
    await proxy.form_login("bob", "builder-22")
    proxy.client.cookie_jar.clear()
    response = await proxy.form_login("bob", "wrong-password")
    assert response.status == 302 and response.headers["Location"] == "/accounts/login/?error=1"
    assert proxy.session_cookie() is None
    status, body = await json_login(proxy, "bob@example.com", "nope-nope")
    assert (status, body) == (401, {"error": "invalid credentials"})
    assert len(legacy.logins()) == 1


async def test_a_failed_legacy_login_is_never_captured(proxy: Proxy, legacy: FakeLegacy) -> None:
    """When the legacy app refuses, its answer goes back as is and nothing is stored."""
    response = await proxy.form_login("bob", "not-his-password")
    assert response.status == 200 and "correct username" in await response.text()
    assert proxy.session_cookie() is None
    assert await proxy.svc.store.count_users() == 0


async def test_a_profile_naming_another_user_is_never_captured(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A profile naming someone else is rejected (identity_mismatch); the answer is unchanged."""
    legacy.profile_override = {"id": 9, "username": "mallory", "email": "mallory@example.com"}
    response = await proxy.form_login("bob", "builder-22")
    assert response.status == 302 and "sessionid" in response.cookies
    assert proxy.session_cookie() is None
    assert await proxy.svc.store.count_users() == 0
    assert proxy.svc.counters.totals["capture.rejected.identity_mismatch"] == 1


async def test_fifty_concurrent_first_logins_give_one_record(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """Fifty simultaneous first logins of one user store exactly one user."""
    # Fifty attempts at once from one address would be throttled past limits.login_account_ip.
    proxy = await start_proxy(lambda raw: raw.update(limits={"login_account_ip": 100}))
    results = await asyncio.gather(
        *(json_login(proxy, "bob@example.com", "builder-22") for _ in range(50))
    )
    assert all(status == 200 for status, _ in results)
    assert await proxy.svc.store.count_users() == 1


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        ({"id": 2, "username": "bob", "email": ""}, "no_email"),
        ({"id": 2, "username": "bob"}, "no_email"),
        ({"id": 2, "username": "bob", "email": "not-an-address"}, "bad_email"),
        ({"id": 2, "username": "bob", "email": "alice@example.com"}, "duplicate_email"),
        ({"id": 2, "username": "Alice", "email": "bob@example.com"}, "duplicate_username"),
        ({"id": 2, "username": "someone", "email": "else@example.com"}, "identity_mismatch"),
    ],
)
async def test_each_validation_reason_is_counted(
    proxy: Proxy, legacy: FakeLegacy, profile: dict[str, Any], reason: str
) -> None:
    """A capture that breaks a validation rule is rejected and counted by its reason."""
    await proxy.form_login("alice", "wonderland-1")
    proxy.client.cookie_jar.clear()
    legacy.profile_override = profile
    identifier = "bob" if profile["username"] == "bob" else "bob@example.com"
    response = await proxy.form_login(identifier, "builder-22")
    assert response.status == 302 and "sessionid" in response.cookies  # legacy answer untouched
    assert await proxy.svc.store.count_users() == 1
    assert proxy.svc.counters.totals[f"capture.rejected.{reason}"] == 1


async def test_requires_username_rejects_a_profile_without_one(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """With requires_username, a profile without a username is rejected as no_username."""
    proxy = await start_proxy(lambda raw: raw["migration"].update(requires_username=True))
    legacy.profile_override = {"id": 2, "email": "bob@example.com"}
    status, _ = await json_login(proxy, "bob@example.com", "builder-22")
    assert status == 200
    assert proxy.svc.counters.totals["capture.rejected.no_username"] == 1


async def test_identifiers_are_case_folded(proxy: Proxy, legacy: FakeLegacy) -> None:
    """ALICE logs in once; Alice@Example.com is then found locally, stored lower-case."""
    response = await proxy.form_login("  ALICE ", "wonderland-1")
    assert response.status == 302
    user = await proxy.svc.store.find_user("alice")
    assert user is not None and user.email == "alice@example.com" and user.username == "alice"
    assert user.profile["email"] == "Alice@Example.com"  # the profile keeps the original case
    status, _ = await json_login(proxy, "Alice@Example.COM", "wonderland-1")
    assert status == 200 and len(legacy.logins()) == 1


async def test_csrf_fields_and_cookies_reach_the_legacy_app_unchanged(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """The forwarded login carries the exact body bytes and cookies the browser sent."""
    await proxy.form_login("bob", "builder-22", extra_field="x y&z")
    seen = legacy.logins()[0]
    token = seen.cookies["csrftoken"]
    assert seen.body == (
        f"csrfmiddlewaretoken={token}&username=bob&password=builder-22&extra_field=x+y%26z".encode()
    )
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_next_parameter_only_allows_same_site_paths(proxy: Proxy) -> None:
    """answer.redirect honours ?next= for relative paths and refuses open redirects."""
    await proxy.form_login("bob", "builder-22")
    for nxt, expected in [
        ("/orders/7", "/orders/7"),
        ("//evil.example/", "/private/"),
        ("https://evil.example/", "/private/"),
        ("/\\evil.example", "/private/"),
    ]:
        proxy.client.cookie_jar.clear()
        response = await proxy.form_login("bob", "builder-22", next=nxt)
        assert response.headers["Location"] == expected, nxt


async def test_malformed_bodies_are_forwarded_in_migrate_and_refused_in_cutover(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A login body authshim cannot read goes to the legacy app untouched, or 400 in cut-over."""
    async with proxy.client.post(
        proxy.url("/api/login"), data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400  # the fake legacy app's own answer to bad JSON
    assert legacy.logins()[-1].body == b"{not json"
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    async with proxy.client.post(
        proxy.url("/api/login"), data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert "not valid JSON" in (await response.json())["error"]
    assert len(legacy.logins()) == 1


async def test_oversize_login_bodies_get_413(proxy: Proxy, legacy: FakeLegacy) -> None:
    """A login body over server.max_body is refused with 413 and never forwarded."""
    async with proxy.client.post(
        proxy.url("/api/login"),
        data=b"x" * (64 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 413
    assert legacy.logins() == []


async def test_cutover_with_the_legacy_app_down(
    start_proxy: StartProxy, legacy: FakeLegacy, legacy_server: Any
) -> None:
    """In cut-over, migrated users log in with the legacy app down; others are refused alike."""
    proxy = await start_proxy()
    await json_login(proxy, "bob@example.com", "builder-22")
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    await legacy_server.close()
    assert await json_login(proxy, "bob@example.com", "builder-22") == (
        200,
        {"ok": True, "user": {"id": 2, "username": "bob", "email": "bob@example.com"}},
    )
    refused = (401, {"error": "invalid credentials"})
    assert await json_login(proxy, "alice@example.com", "wonderland-1") == refused
    assert await json_login(proxy, "nobody@example.com", "whatever-1") == refused
    assert await json_login(proxy, "bob@example.com", "wrong-one") == refused


async def test_legacy_down_in_migrate_gives_502_only_to_unmigrated_users(
    start_proxy: StartProxy, legacy_server: Any
) -> None:
    """With the legacy app down, unmigrated logins get 502 and migrated ones still work."""
    proxy = await start_proxy()
    await json_login(proxy, "bob@example.com", "builder-22")
    await legacy_server.close()
    status, text = await json_login(proxy, "alice@example.com", "wonderland-1")
    assert status == 502 and "unavailable" in text
    status, body = await json_login(proxy, "bob@example.com", "builder-22")
    assert status == 200 and body["ok"] is True


async def test_data_survives_a_restart(start_proxy: StartProxy, legacy: FakeLegacy) -> None:
    """A user captured before a restart is answered locally after it."""
    first = await start_proxy()
    await json_login(first, "bob@example.com", "builder-22")
    await first.server.close()
    second = await start_proxy()
    status, _ = await json_login(second, "bob@example.com", "builder-22")
    assert status == 200 and len(legacy.logins()) == 1


async def test_a_rehash_happens_when_parameters_change(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """After the argon2 parameters change, the next local login stores a new hash."""
    first = await start_proxy()
    await json_login(first, "bob@example.com", "builder-22")
    old = await first.svc.store.find_user("bob")
    await first.server.close()
    second = await start_proxy(lambda raw: raw["passwords"].update(memory_cost=128))
    status, _ = await json_login(second, "bob@example.com", "builder-22")
    new = await second.svc.store.find_user("bob")
    assert status == 200 and old is not None and new is not None
    assert "m=64" in old.password_hash and "m=128" in new.password_hash
    assert new.login_count == 1 and len(legacy.logins()) == 1


async def test_a_blocked_user_is_refused(proxy: Proxy) -> None:
    """A blocked migrated user gets the failure answer even with the right password."""
    await json_login(proxy, "bob@example.com", "builder-22")
    user = await proxy.svc.store.find_user("bob")
    assert user is not None
    await proxy.svc.store.set_blocked(user.id, True)
    assert (await json_login(proxy, "bob@example.com", "builder-22"))[0] == 401


async def test_a_mode_switch_reaches_a_running_proxy(proxy: Proxy, legacy: FakeLegacy) -> None:
    """`authshim mode cutover` written to the store is picked up by the running proxy."""
    await write_mode(proxy.svc.store, "cutover")
    for _ in range(50):
        if proxy.svc.modes.current == "cutover":
            break
        await asyncio.sleep(0.05)
    assert proxy.svc.modes.current == "cutover"
    assert (await json_login(proxy, "bob@example.com", "builder-22"))[0] == 401
    assert legacy.logins() == []


async def test_no_password_reaches_the_log(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    """One line per intercepted login, with route and outcome, and never the password."""
    with caplog.at_level(logging.INFO, logger="authshim"):
        await proxy.form_login("bob", "builder-22")
        await json_login(proxy, "bob@example.com", "builder-22")
        await json_login(proxy, "bob@example.com", "wrong-password-77")
    lines = [r.getMessage() for r in caplog.records if '"event":"login"' in r.getMessage()]
    assert len(lines) == 3
    assert '"outcome":"captured"' in lines[0] and '"outcome":"local_failed"' in lines[2]
    assert not any(secret in caplog.text for secret in ("builder-22", "wrong-password-77"))


async def test_past_the_argon2_queue_logins_get_503_and_pages_still_flow(
    start_proxy: StartProxy,
) -> None:
    """Past workers + queue_limit, logins get 503 + Retry-After; pages are still answered."""
    proxy = await start_proxy(
        lambda raw: raw["passwords"].update(
            workers=1, queue_limit=1, time_cost=30, memory_cost=2048
        )
    )
    await json_login(proxy, "bob@example.com", "builder-22")  # captured

    async def login() -> tuple[int, str | None]:
        body = {"email": "bob@example.com", "password": "builder-22"}
        async with proxy.client.post(proxy.url("/api/login"), json=body) as response:
            await response.read()
            return response.status, response.headers.get("Retry-After")

    logins = [asyncio.ensure_future(login()) for _ in range(8)]
    await asyncio.sleep(0.01)
    async with proxy.client.get(proxy.url("/dashboard")) as page:
        assert page.status == 200
    pending_when_the_page_came = sum(not login.done() for login in logins)
    results = await asyncio.gather(*logins)
    statuses = [status for status, _ in results]
    assert statuses.count(503) >= 4 and statuses.count(200) >= 1
    assert all(retry == "1" for status, retry in results if status == 503)
    assert pending_when_the_page_came > 0  # the page did not wait for the hashing to finish


async def test_a_body_arriving_in_pieces_is_read_whole(proxy: Proxy, legacy: FakeLegacy) -> None:
    """A login body split over several TCP segments is read to its end, then judged."""
    assert proxy.server.port is not None
    body = json.dumps({"email": "bob@example.com", "password": "builder-22"}).encode()
    head = (
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.server.port)
    try:
        writer.write(head.encode() + body[:10])
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(body[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    # Forwarded whole (not the first piece), re-encoded from authshim's reading of it.
    assert json.loads(legacy.logins()[0].body) == json.loads(body)
    assert await proxy.svc.store.find_user("bob") is not None
