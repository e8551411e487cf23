"""Multi-step legacy logins and second factors, in front of the tracker (a Rails-like app)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.modes import write_mode
from tests.fixtures.proxy import Proxy
from tests.fixtures.tracker import (
    COOKIE,
    LOCKED,
    StartTracker,
    Tracker,
    tracker_config,
    tracker_login,
)

# Done only when the answer goes anywhere but back to the login or on to the second page.
SUCCESS = {"status": [302], "cookie": COOKIE,
           "location": {"not_prefix": ["/login", "/account/twofa"]}}  # fmt: skip
STEP = {"location": {"prefix": "/account/twofa"}}
PENDING = "authshim_pending"


async def confirm(proxy: Proxy, code: str) -> Any:
    response = await proxy.client.post(
        proxy.url("/account/twofa/confirm"), data={"twofa_code": code}, allow_redirects=False
    )
    await response.read()
    return response


def pending_cookie(proxy: Proxy) -> str | None:
    cookie = proxy.client.cookie_jar.filter_cookies(proxy.server.make_url("/")).get(PENDING)
    return cookie.value if cookie and cookie.value else None


async def test_a_second_factor_keeps_the_user_on_the_legacy_login(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """A two-factor user's right password is relayed and never captured; the second factor is
    the tracker's to ask, at every login (counted as second_factor)."""
    proxy = await start_tracker(tracker_config(success=SUCCESS, step=STEP))
    for _ in range(2):
        first = await tracker_login(proxy, "twofa", "twofa-password")
        assert first.headers["Location"].endswith("/account/twofa/confirm")
        done = await confirm(proxy, tracker.code("twofa"))
        assert done.status == 302 and done.headers["Location"] == "/my/page"
        assert await proxy.svc.store.find_user("twofa") is None
        assert pending_cookie(proxy) is None and proxy.session_cookie() is None
        proxy.client.cookie_jar.clear()
    assert proxy.svc.counters.totals["login.second_factor"] == 2
    assert len(tracker.posts("/login")) == 2


async def test_a_multi_step_login_is_captured_when_its_last_step_finishes(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """second_factor = false: the first step keeps a pending capture behind a cookie; a wrong
    answer to the step keeps it; the step that finishes the login completes the capture, with
    a session; the next login is answered by authshim alone."""
    change = tracker_config(success=SUCCESS, step=STEP, second_factor=False,
                            step_paths=["/account/twofa/confirm"])  # fmt: skip
    proxy = await start_tracker(change)
    first = await tracker_login(proxy, "twofa", "twofa-password")
    assert first.headers["Location"].endswith("/account/twofa/confirm")
    assert pending_cookie(proxy) is not None and proxy.session_cookie() is None
    assert await proxy.svc.store.find_user("twofa") is None
    wrong = await confirm(proxy, "000000" if tracker.code("twofa") != "000000" else "111111")
    assert wrong.status == 200 and pending_cookie(proxy) is not None
    done = await confirm(proxy, tracker.code("twofa"))
    assert done.status == 302 and done.headers["Location"] == "/my/page"
    user = await proxy.svc.store.find_user("twofa")
    assert user is not None and user.legacy_id == "3"
    assert proxy.session_cookie() is not None and pending_cookie(proxy) is None
    proxy.client.cookie_jar.clear()
    logins = len(tracker.posts("/login"))
    again = await tracker_login(proxy, "twofa", "twofa-password")
    assert again.headers["Location"] == "/my/page" and len(tracker.posts("/login")) == logins


async def test_an_expired_pending_capture_is_not_completed(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """A step finished after ``step_expires`` logs the user in at the tracker, not here."""
    change = tracker_config(success=SUCCESS, step=STEP, second_factor=False,
                            step_paths=["/account/twofa/confirm"], step_expires="0s")  # fmt: skip
    proxy = await start_tracker(change)
    await tracker_login(proxy, "twofa", "twofa-password")
    done = await confirm(proxy, tracker.code("twofa"))
    assert done.status == 302 and await proxy.svc.store.find_user("twofa") is None


@pytest.mark.parametrize("mode", ["migrate", "cutover"])
async def test_a_migrated_user_with_a_second_factor_is_not_answered_on_the_password(
    start_tracker: StartTracker, tracker: Tracker, mode: str
) -> None:
    """Captured before the operator knew, then found in the profile (`[profile] second_factor`):
    forwarded to the tracker (which asks for the code) in migrate mode, refused in cut-over."""
    plain = {"status": [302], "cookie": COOKIE}
    proxy = await start_tracker(tracker_config(success=plain))
    await tracker_login(proxy, "twofa", "twofa-password")  # captured, second factor and all
    assert await proxy.svc.store.find_user("twofa") is not None

    def second_factor(raw: dict[str, Any]) -> None:
        raw["profile"]["second_factor"] = "/twofa_scheme"

    guarded = await start_tracker(tracker_config(success=plain), second_factor)
    if mode == "cutover":
        await write_mode(guarded.svc.store, "cutover")
        await guarded.svc.modes.refresh()
    logins = len(tracker.posts("/login"))
    answer = await tracker_login(guarded, "twofa", "twofa-password")
    if mode == "migrate":
        assert answer.headers["Location"].endswith("/account/twofa/confirm")
        assert len(tracker.posts("/login")) == logins + 1
    else:
        assert answer.headers["Location"] == "/login"  # the configured failure
        assert len(tracker.posts("/login")) == logins
    assert guarded.session_cookie() is None


async def test_a_migrated_user_locked_since_is_refused(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """[profile] active: a stored profile that says locked refuses the local login too."""
    proxy = await start_tracker(tracker_config(success={"status": [302], "cookie": COOKIE}))
    await tracker_login(proxy, "user4", "user4-password")
    user = await proxy.svc.store.find_user("user4")
    assert user is not None
    await proxy.svc.store.update_profile(user.id, {**user.profile, "status": LOCKED})

    def active(raw: dict[str, Any]) -> None:
        raw["profile"].update(active="/status", active_values=[1])

    guarded = await start_tracker(tracker_config(success={"status": [302], "cookie": COOKIE}),
                                  active)  # fmt: skip
    refused = await tracker_login(guarded, "user4", "user4-password")
    assert refused.headers["Location"] == "/login" and guarded.session_cookie() is None
    assert guarded.svc.counters.totals["login.inactive"] == 1


async def test_a_logout_route_limited_to_post(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """[logout] methods = ["POST"]: the tracker's GET /logout (a "Sign out?" page) leaves
    authshim's session alone; the POST ends it."""

    def post_only(raw: dict[str, Any]) -> None:
        raw["logout"] = {"path": "/logout", "methods": ["POST"]}

    plain = {"status": [302], "cookie": COOKIE, "location": {"not_prefix": ["/login"]}}
    proxy = await start_tracker(tracker_config(success=plain), post_only)
    await tracker_login(proxy, "user4", "user4-password")  # captured, with a session
    assert proxy.session_cookie() is not None
    async with proxy.client.get(proxy.url("/logout")) as page:
        assert page.status == 200
    assert proxy.session_cookie() is not None
    async with proxy.client.post(proxy.url("/logout"), allow_redirects=False) as done:
        assert done.status in (302, 303)
    assert proxy.session_cookie() is None
