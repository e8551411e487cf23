"""Rules in the flows: each event at its point, each answer, the must-change-password step in
form and JSON logins, identity values per session, and a context that never holds a password."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests import rule_examples
from tests.accounts import accounts, post_form
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy
from tests.fixtures.webhook import HOOK_SECRET, Receiver

STEP = "/.authshim/change-password"
Change = Callable[[dict[str, Any]], None]


@pytest.fixture(autouse=True)
def _clear_seen() -> None:
    rule_examples.SEEN.clear()


def rules(*entries: dict[str, Any], extra: Change | None = None) -> Change:
    def change(raw: dict[str, Any]) -> None:
        raw["rules"] = list(entries)
        if extra is not None:
            extra(raw)

    return change


def recorder(events: list[str], answer: Any = None, **kw: Any) -> dict[str, Any]:
    options = {"answer": answer} if answer is not None else {}
    return {"name": kw.pop("name", "rec"), "events": events,
            "call": "tests.rule_examples:record", "options": options, **kw}  # fmt: skip


async def json_login(proxy: Proxy, email: str, password: str) -> tuple[int, Any, list[str]]:
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}
    ) as response:
        return response.status, await response.json(), response.headers.getall("Set-Cookie", [])


async def echoed_headers(proxy: Proxy, **headers: str) -> dict[str, str]:
    async with proxy.client.get(proxy.url("/anything"), headers=headers) as response:
        body: dict[str, Any] = await response.json()
        return {k.lower(): v for k, v in body["headers"].items()}


async def test_a_login_rule_denies_a_local_login_with_the_failure_answer(
    start_proxy: StartProxy,
) -> None:
    """A deny at login gives the route's failure answer, no session, counted by rule."""
    proxy = await start_proxy(rules(recorder(["login"], {"deny": "banned"}, name="gate")))
    first = await proxy.form_login("bob", "builder-22")  # captured, then denied
    assert first.headers["Location"] == "/accounts/login/?error=1"
    proxy.client.cookie_jar.clear()
    second = await proxy.form_login("bob", "builder-22")  # local, denied
    assert second.status == 302 and second.headers["Location"] == "/accounts/login/?error=1"
    assert proxy.session_cookie() is None
    totals = proxy.svc.counters.totals
    assert totals["rules.gate.deny"] == 2 and totals["login.rule_denied"] == 2
    assert [c["auth"] for c in rule_examples.SEEN] == ["captured", "local"]


async def test_identity_values_reach_the_legacy_app_and_client_copies_are_stripped(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """The built-in groups rule puts the profile's roles into X-Forwarded-Groups for the
    session; a client's own X-Forwarded-Groups never passes."""
    legacy.users["bob"]["roles"] = ["staff", "ops"]
    groups = {"name": "groups", "call": "proxy.rules.builtin:groups_header",
              "identity_headers": ["X-Forwarded-Groups"],
              "options": {"field": "/roles", "header": "X-Forwarded-Groups"}}  # fmt: skip
    proxy = await start_proxy(rules(groups))
    anonymous = await echoed_headers(proxy, **{"X-Forwarded-Groups": "admin"})
    assert "x-forwarded-groups" not in anonymous
    await proxy.form_login("bob", "builder-22")
    seen = await echoed_headers(proxy, **{"X-Forwarded-Groups": "admin"})
    assert seen["x-forwarded-groups"] == "staff,ops" and seen["x-forwarded-user"] == "bob"


async def test_identity_is_re_evaluated_after_ttl_and_a_deny_drops_it(
    start_proxy: StartProxy, receiver: tuple[Receiver, str]
) -> None:
    """Past ttl the login rules run again for the session; a deny then sends the request on
    without identity."""
    state, url = receiver
    state.answer = {"identity": {"X-Forwarded-Groups": "staff"}}
    hook = {"name": "hook", "url": url, "secret": HOOK_SECRET, "ttl": "1ms",
            "identity_headers": ["X-Forwarded-Groups"]}  # fmt: skip
    proxy = await start_proxy(rules(hook))
    await proxy.form_login("bob", "builder-22")
    assert (await echoed_headers(proxy))["x-forwarded-groups"] == "staff"
    state.answer = {"deny": True}
    await asyncio.sleep(0.01)  # past the ttl
    seen = await echoed_headers(proxy)
    assert "x-forwarded-groups" not in seen and "x-forwarded-user" not in seen
    assert state.received[-1]["auth"] == "session"


async def test_app_metadata_is_merged_into_the_stored_profile(start_proxy: StartProxy) -> None:
    """A login rule's app_metadata lands in the stored profile; a capture rule's before the
    user is stored."""
    proxy = await start_proxy(rules(
        recorder(["capture"], {"app_metadata": {"plan": "gold"}}, name="cap"),
        recorder(["login"], {"app_metadata": {"seen": True}}, name="log"),
    ))  # fmt: skip
    await proxy.form_login("bob", "builder-22")
    user = await proxy.svc.store.find_user("bob")
    assert user is not None and user.profile["app_metadata"] == {"plan": "gold", "seen": True}


async def test_a_capture_rule_that_denies_leaves_the_legacy_answer_alone(
    start_proxy: StartProxy,
) -> None:
    """A capture deny stores nobody; the legacy app's answer goes back as it came."""
    proxy = await start_proxy(rules(recorder(["capture"], {"deny": True}, name="nocap")))
    answer = await proxy.form_login("bob", "builder-22")
    assert answer.status == 302 and answer.headers["Location"] == "/"
    assert await proxy.svc.store.find_user("bob") is None
    assert proxy.svc.counters.totals["capture.rejected.rule_denied"] == 1


async def test_a_capture_rule_may_transform_the_profile(start_proxy: StartProxy) -> None:
    """A capture rule's profile is stored instead (still naming the same user)."""
    profile = {"id": 2, "username": "bob", "email": "bob@example.com", "tier": "new"}
    proxy = await start_proxy(rules(recorder(["capture"], {"profile": profile})))
    await proxy.form_login("bob", "builder-22")
    user = await proxy.svc.store.find_user("bob")
    assert user is not None and user.profile == profile


async def test_a_signup_rule_denies_with_its_message(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    """A local sign-up a rule denies is refused with the rule's message and not stored."""
    change = rules(recorder(["signup"], {"deny": "no sign-ups from there"}),
                   extra=accounts(tmp_path / "outbox"))  # fmt: skip
    proxy = await start_proxy(change)
    form = {"email": "dave@example.com", "username": "dave", "password": "dave-pass"}
    status, _, body = await post_form(proxy, "/accounts/signup/", form)
    assert status == 403 and "no sign-ups from there" in body
    assert await proxy.svc.store.find_user("dave") is None


async def test_migrated_and_password_changed_notify_a_webhook(
    start_proxy: StartProxy, tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    """The built-in notify example: a webhook on migrated and password_changed gets each
    user after the store write."""
    state, url = receiver
    hook = {"name": "notify", "url": url, "secret": HOOK_SECRET,
            "events": ["migrated", "password_changed"], "on_error": "allow"}  # fmt: skip
    proxy = await start_proxy(rules(hook, extra=accounts(tmp_path / "outbox")))
    await proxy.form_login("bob", "builder-22")
    change = {"old_password": "builder-22", "new_password1": "rebuilt-333",
              "new_password2": "rebuilt-333"}  # fmt: skip
    await post_form(proxy, "/accounts/password_change/", change)
    await proxy.svc.background.drain()
    assert [(c["event"], c["auth"]) for c in state.received] == [
        ("migrated", "captured"), ("password_changed", "local")]  # fmt: skip
    assert state.received[0]["user"]["id"] is not None


def _token(page: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def test_the_must_change_step_in_a_form_login(start_proxy: StartProxy) -> None:
    """A rule's must_change_password: the right password gets the step page, no session; the
    new password set there gives the login's own answer with a session, and the flag is gone."""
    proxy = await start_proxy(rules(recorder(["capture"], {"must_change_password": True})))
    await proxy.form_login("bob", "builder-22")  # captured and flagged: the step
    proxy.client.cookie_jar.clear()
    answer = await proxy.form_login("bob", "builder-22", next="/after/")
    page = await answer.text()
    assert answer.status == 403 and "Choose a new password" in page
    assert proxy.session_cookie() is None
    token = _token(page)
    same = await post_form(proxy, STEP, {"token": token, "password": "builder-22"})
    assert same[0] == 400 and "other than your current" in same[2]
    status, location, _ = await post_form(
        proxy, STEP, {"token": token, "password": "new-pass-44", "password2": "new-pass-44"}
    )
    assert (status, location) == (302, "/after/") and proxy.session_cookie() is not None
    again = await post_form(proxy, STEP, {"token": token, "password": "other-pass-55"})
    assert again[0] == 400  # the token worked once
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "new-pass-44")).headers["Location"] == "/private/"


async def test_the_must_change_step_in_a_json_login_from_the_capture_policy(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    """A breached legacy password (the operator's list) is captured flagged; the JSON login
    gets a 403 challenge with a token; the JSON step refuses a breached new password and then
    answers with a session."""
    listed = tmp_path / "breached.txt"
    listed.write_text("wonderland-1\nhunter2-hunter2\n")

    def policy(raw: dict[str, Any]) -> None:
        raw["policy"] = {"breached_list": str(listed)}

    proxy = await start_proxy(policy)
    status, body, cookies = await json_login(proxy, "alice@example.com", "wonderland-1")
    assert status == 403 and body["challenge"] == "new_password_required" and body["url"] == STEP
    assert not any(c.startswith("authshim=") for c in cookies)
    async with proxy.client.post(
        proxy.url(STEP), json={"token": body["token"], "password": "hunter2-hunter2"}
    ) as weak:
        assert weak.status == 400 and "leaked" in (await weak.json())["error"]
    async with proxy.client.post(
        proxy.url(STEP), json={"token": body["token"], "password": "looking-glass-9"}
    ) as done:
        assert done.status == 200 and (await done.json())["ok"] is True
        assert any(c.startswith("authshim=") for c in done.headers.getall("Set-Cookie"))
    status, _, _ = await json_login(proxy, "alice@example.com", "looking-glass-9")
    assert status == 200


async def test_the_context_never_holds_a_password_or_hash(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """Every event's context, serialised, holds neither the password typed, nor the stored
    hash, nor a legacy profile's password field."""
    legacy.users["bob"]["password_hash"] = "pbkdf2$legacy-hash-value"
    every = ["login", "capture", "signup", "password_changed", "migrated"]
    proxy = await start_proxy(rules(recorder(every), extra=accounts(tmp_path / "outbox")))
    await proxy.form_login("bob", "builder-22")  # capture, migrated, login
    proxy.client.cookie_jar.clear()
    await proxy.form_login("bob", "builder-22")  # login (local)
    await post_form(proxy, "/accounts/password_change/", {
        "old_password": "builder-22", "new_password1": "rebuilt-333",
        "new_password2": "rebuilt-333"})  # fmt: skip
    await post_form(proxy, "/accounts/signup/",
                    {"email": "dave@example.com", "username": "dave", "password": "dave-pass"})
    await proxy.svc.background.drain()
    user = await proxy.svc.store.find_user("bob")
    assert user is not None
    events = {c["event"] for c in rule_examples.SEEN}
    assert events == set(every)
    for context in rule_examples.SEEN:
        text = orjson.dumps(context).decode()
        for secret in ("builder-22", "rebuilt-333", "dave-pass", "legacy-hash-value", "$argon2"):
            assert secret not in text, (context["event"], secret)
        assert set(context) == {"event", "auth", "user", "client", "route", "mode", "time"}
