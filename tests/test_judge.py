"""Judging the legacy app as a browser would: rules on Location, headers and body, `step`
rules for a login that goes on (a second factor), and users the legacy app refuses."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config import ProfileMap, SuccessRules
from proxy.errors import ConfigError
from proxy.forward import UpstreamAnswer
from proxy.legacy import is_step, judge, profile_active
from tests.fixtures.proxy import make_config
from tests.fixtures.tracker import (
    COOKIE,
    StartTracker,
    Tracker,
    tracker_config,
    tracker_login,
)

# Today's rules: they cannot tell a finished login from a second-factor page or a locked user.
PLAIN = {"status": [302], "cookie": COOKIE}


def answer(status: int = 302, body: bytes = b"", **headers: str) -> UpstreamAnswer:
    h: CIMultiDict[str] = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return UpstreamAnswer(status, "", CIMultiDictProxy(h), body, True)


def rules(**success: Any) -> SuccessRules:
    """The success rules a config with ``success`` gets."""

    def change(raw: dict[str, Any]) -> None:
        raw["login"] = raw["login"][:1]
        raw["login"][0]["success"] = success

    return make_config("http://127.0.0.1:1", "sqlite:///x.db", change).logins[0].success


@pytest.mark.parametrize("location", ["/my/page", "http://tracker.example/my/page", "my/page"])
def test_a_location_rule_resolves_the_location_first(location: str) -> None:
    """A path, an absolute URL and a relative reference to /my/page all equal /my/page."""
    assert judge(answer(Location=location), rules(location={"equals": "/my/page"}), "/login")
    assert not judge(answer(Location=location), rules(location={"equals": "/login"}), "/login")


def test_location_prefix_not_prefix_and_pattern() -> None:
    """prefix, not_prefix (any of a list) and pattern look at the resolved path and query."""
    twofa = answer(Location="http://h/account/twofa/confirm?back=1")
    assert judge(twofa, rules(location={"prefix": "/account/twofa"}))
    assert not judge(twofa, rules(location={"not_prefix": ["/login", "/account/twofa"]}))
    assert judge(answer(Location="/my/page"), rules(location={"not_prefix": ["/login"]}))
    assert judge(twofa, rules(location={"pattern": r"^/account/twofa/.*back=1$"}))
    assert not judge(answer(), rules(location={"not_prefix": "/login"}))  # no Location at all
    assert judge(twofa, rules(location={"equals": "http://h/account/twofa/confirm?back=1"}))


def test_header_and_body_rules() -> None:
    """A header present, absent, equal or matching; the body containing or not some text."""
    ok = answer(200, b"<p>Welcome back</p>", X_Login="ok", X_Trace="abc-123")
    assert judge(ok, rules(headers={"X-Login": {"equals": "ok"}, "X-Trace": {"pattern": r"\d+$"}}))
    assert judge(ok, rules(headers={"X-Error": {"present": False}}))
    assert not judge(ok, rules(headers={"X-Login": {"equals": "no"}}))
    assert not judge(ok, rules(headers={"X-Missing": {"present": True}}))
    assert judge(ok, rules(body={"contains": "Welcome", "not_contains": ["flash_error"]}))
    assert not judge(ok, rules(body={"not_contains": "Welcome"}))


def test_step_rules_are_a_predicate() -> None:
    """is_step holds for an answer the step rules match, never without step rules."""
    step = rules(location={"prefix": "/account/twofa"})
    assert is_step(answer(Location="/account/twofa/confirm"), step, "/login")
    assert not is_step(answer(Location="/my/page"), step, "/login")
    assert not is_step(answer(Location="/account/twofa/confirm"), None)


def test_profile_active() -> None:
    """The value must be one of active_values (1 is not true), or be true without values."""
    by_status = ProfileMap(active="/status", active_values=(1,))
    assert profile_active({"status": 1}, by_status)
    assert not profile_active({"status": 3}, by_status)
    assert not profile_active({"status": True}, by_status)
    assert not profile_active({}, by_status)
    flag = ProfileMap(active="/is_active")
    assert profile_active({"is_active": True}, flag)
    assert not profile_active({"is_active": 1}, flag)
    assert profile_active({}, ProfileMap())


@pytest.mark.parametrize(
    ("success", "message"),
    [
        ({"location": {"prefix": "account"}}, "compares paths or absolute URLs"),
        ({"location": {"pattern": "("}}, "location.pattern: is not a valid regular expression"),
        ({"location": {"starts": "/x"}}, "location.starts: unknown key"),
        ({"location": {}}, "needs equals, prefix, not_prefix or pattern"),
        ({"headers": {"X-A": "ok"}}, "success.headers.X-A: must be a table"),
        ({"headers": {"X-A": {"present": False, "equals": "x"}}}, "takes no equals or pattern"),
        ({"body": {"contains": 3}}, "body.contains: must be a string or a list of strings"),
    ],
)
def test_bad_rules_are_named_by_key(success: dict[str, Any], message: str) -> None:
    """Each malformed rule is reported under its key."""
    with pytest.raises(ConfigError, match=message):
        rules(**success)


async def test_a_location_rule_keeps_locked_and_two_factor_users_out(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """success with location.not_prefix: the locked user's right password (302 + cookie back to
    /login) and a two-factor user's first step are relayed and not captured; user4 is."""
    success = {**PLAIN, "location": {"not_prefix": ["/login", "/account/twofa"]}}
    proxy = await start_tracker(tracker_config(success=success))
    locked = await tracker_login(proxy, "locked", "locked-password")
    assert locked.status == 302 and locked.headers["Location"].endswith("/login")
    twofa = await tracker_login(proxy, "twofa", "twofa-password")
    assert twofa.status == 302 and "/account/twofa/confirm" in twofa.headers["Location"]
    assert await proxy.svc.store.find_user("locked") is None
    assert await proxy.svc.store.find_user("twofa") is None
    # The second factor passes through to the tracker as before.
    done = await proxy.client.post(
        proxy.url("/account/twofa/confirm"), data={"twofa_code": tracker.code("twofa")},
        allow_redirects=False,
    )  # fmt: skip
    assert done.status == 302 and done.headers["Location"].endswith("/my/page")
    ok = await tracker_login(proxy, "user4", "user4-password")
    assert ok.status == 302 and proxy.session_cookie() is not None
    user = await proxy.svc.store.find_user("user4")
    assert user is not None and user.email == "user4@example.com" and user.legacy_id == "2"


async def test_a_step_rule_keeps_the_first_step_out(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """With only today's rules plus step = { location.prefix = /account/twofa }, a two-factor
    user's right password is relayed as a step (outcome second_factor), never captured."""
    proxy = await start_tracker(
        tracker_config(success=PLAIN, step={"location": {"prefix": "/account/twofa"}})
    )
    twofa = await tracker_login(proxy, "twofa", "twofa-password")
    assert twofa.status == 302 and "/account/twofa/confirm" in twofa.headers["Location"]
    assert twofa.cookies.get(COOKIE) is not None and proxy.session_cookie() is None
    assert await proxy.svc.store.find_user("twofa") is None
    assert proxy.svc.counters.totals["login.second_factor"] == 1


async def test_an_active_rule_keeps_the_locked_user_out(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """With today's rules, [profile] active = /status, active_values = [1] refuses the locked
    user's profile (capture.rejected.inactive); the client still gets the tracker's answer."""

    def active(raw: dict[str, Any]) -> None:
        raw["profile"].update(active="/status", active_values=[1])

    proxy = await start_tracker(tracker_config(success=PLAIN), active)
    locked = await tracker_login(proxy, "locked", "locked-password")
    assert locked.status == 302 and locked.headers["Location"].endswith("/login")
    assert await proxy.svc.store.find_user("locked") is None
    assert proxy.svc.counters.totals["capture.rejected.inactive"] == 1
    await tracker_login(proxy, "user4", "user4-password")
    assert await proxy.svc.store.find_user("user4") is not None


async def test_without_the_new_rules_both_are_captured(
    start_tracker: StartTracker, tracker: Tracker
) -> None:
    """The trouble seen in front of the real tracker: status and cookie alone capture the
    locked user and the two-factor user's first step."""
    proxy = await start_tracker(tracker_config(success=PLAIN))
    await tracker_login(proxy, "locked", "locked-password")
    await tracker_login(proxy, "twofa", "twofa-password")
    assert await proxy.svc.store.find_user("locked") is not None
    assert await proxy.svc.store.find_user("twofa") is not None
