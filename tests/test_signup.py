"""Sign-up: local (checked against the store and the legacy look-up) and upstream (captured)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.modes import write_mode
from tests.accounts import accounts, post_form
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy

CONFLICT = "/accounts/signup/?error=exists"


@pytest.fixture
async def proxy(start_proxy: StartProxy, tmp_path: Path) -> Proxy:
    """authshim with a local sign-up and the legacy look-up."""
    result: Proxy = await start_proxy(accounts(tmp_path / "outbox"))
    return result


def form(email: str, username: str, password: str = "dave-pass", **extra: str) -> dict[str, str]:
    return {"email": email, "username": username, "password": password, **extra}


async def test_a_local_sign_up_creates_the_user_with_a_session(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A new user is created (source signup, allowed fields only) and gets a session at once;
    the legacy app never sees the sign-up, and the user then logs in locally."""
    answer = await post_form(
        proxy, "/accounts/signup/",
        form("Dave@Example.com", "Dave", first_name="Dave", is_admin="yes"),
    )  # fmt: skip
    assert answer[:2] == (302, "/private/") and proxy.session_cookie()
    user = await proxy.svc.store.find_user("dave@example.com")
    assert user is not None and user.source == "signup" and user.username == "dave"
    assert user.profile == {"first_name": "Dave", "email": "Dave@Example.com", "username": "Dave"}
    assert legacy.posts("/accounts/signup/") == []
    lookups = sorted(s.path for s in legacy.lookups())
    assert lookups == [
        "/internal/users?email=dave@example.com",
        "/internal/users?username=dave",
    ]
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("dave", "dave-pass")).headers["Location"] == "/private/"
    assert legacy.logins() == []


@pytest.mark.parametrize(
    ("email", "username"),
    [("ALICE@example.com", "somebody-new"), ("new@example.com", "Bob")],
)
async def test_a_legacy_users_email_or_username_conflicts(
    proxy: Proxy, email: str, username: str
) -> None:
    """An email or username a legacy user has (in any case) gets the conflict answer."""
    answer = await post_form(proxy, "/accounts/signup/", form(email, username))
    assert answer[:2] == (302, CONFLICT)
    assert await proxy.svc.store.count_users() == 0 and proxy.session_cookie() is None


async def test_a_stored_users_email_or_username_conflicts(proxy: Proxy) -> None:
    """A stored user's email or username, in another case, gets the conflict answer."""
    await post_form(proxy, "/accounts/signup/", form("dave@example.com", "dave"))
    proxy.client.cookie_jar.clear()
    for email, username in (("DAVE@Example.COM", "other"), ("other@example.com", "DAVE")):
        answer = await post_form(proxy, "/accounts/signup/", form(email, username))
        assert answer[:2] == (302, CONFLICT)
    assert await proxy.svc.store.count_users() == 1


async def test_a_failed_lookup_creates_nobody(proxy: Proxy, legacy: FakeLegacy) -> None:
    """When the look-up fails, the sign-up is refused with 503: never taken for "not found"."""
    legacy.lookup_status = 502
    status, _, body = await post_form(proxy, "/accounts/signup/", form("dave@example.com", "dave"))
    assert status == 503 and "legacy" in body
    assert await proxy.svc.store.count_users() == 0
    legacy.lookup_status = None
    legacy.lookup_auth = "Bearer something-else"  # the look-up is refused: 401
    status, _, _ = await post_form(proxy, "/accounts/signup/", form("dave@example.com", "dave"))
    assert status == 503 and await proxy.svc.store.count_users() == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (form("not-an-address", "dave"), "email is not valid"),
        (form("", "dave"), "email is required"),
        (form("dave@example.com", "dave", password="short"), "at least 8 characters"),
        ({"email": "dave@example.com"}, "'password' is missing"),
    ],
)
async def test_bad_input_is_a_clear_400(
    proxy: Proxy, legacy: FakeLegacy, fields: dict[str, str], message: str
) -> None:
    """Invalid input is refused with 400 and a message saying what is wrong; nothing stored."""
    status, _, body = await post_form(proxy, "/accounts/signup/", fields)
    assert status == 400 and message in body, body
    assert await proxy.svc.store.count_users() == 0


async def test_a_cross_site_form_is_refused(proxy: Proxy) -> None:
    """A sign-up form posted from another site is refused (403): no login CSRF."""
    async with proxy.client.post(
        proxy.url("/accounts/signup/"), data=form("dave@example.com", "dave"),
        headers={"Origin": "https://evil.example"}, allow_redirects=False,
    ) as response:  # fmt: skip
        assert response.status == 403
    assert await proxy.svc.store.count_users() == 0


async def test_an_upstream_sign_up_is_captured(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """With handler = upstream the legacy app signs the user up and authshim captures them."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", signup_handler="upstream"))
    answer = await post_form(proxy, "/accounts/signup/", form("Erin@Example.com", "Erin"))
    assert answer[:2] == (302, "/welcome/")  # the legacy app's own answer
    assert len(legacy.posts("/accounts/signup/")) == 1 and proxy.session_cookie()
    user = await proxy.svc.store.find_user("erin")
    assert user is not None and user.source == "signup" and user.legacy_id == "103"
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("erin", "dave-pass")).headers["Location"] == "/private/"
    assert legacy.logins() == []


async def test_an_upstream_sign_up_the_legacy_app_refuses_is_not_captured(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """A refused legacy sign-up goes back unchanged and stores nothing."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", signup_handler="upstream"))
    status, _, body = await post_form(proxy, "/accounts/signup/", form("bob@example.com", "bob"))
    assert status == 200 and "already exists" in body
    assert await proxy.svc.store.count_users() == 0


async def test_sign_up_in_cutover_without_the_legacy_app(
    start_proxy: StartProxy, legacy_server: Any, tmp_path: Path
) -> None:
    """In cut-over (legacy app down) a sign-up is local, even with handler = upstream, and a
    stored user still conflicts."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", signup_handler="upstream"))
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    await legacy_server.close()
    answer = await post_form(proxy, "/accounts/signup/", form("frank@example.com", "frank"))
    assert answer[:2] == (302, "/private/")
    proxy.client.cookie_jar.clear()
    answer = await post_form(proxy, "/accounts/signup/", form("FRANK@example.com", "frank2"))
    assert answer[:2] == (302, CONFLICT)
    assert await proxy.svc.store.count_users() == 1
