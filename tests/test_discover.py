"""`authshim discover`: the login form found, the body a browser sends, success rules proposed."""

from __future__ import annotations

import asyncio
import io
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qsl

import orjson
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.commands.discover import discover
from proxy.config import parse_config
from proxy.discover import find_login_form, login_block, propose_failure, propose_success
from proxy.forward import UpstreamAnswer
from proxy.legacy import judge
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import EXAMPLE, SECRET
from tests.fixtures.tracker import StartTracker, Tracker, tracker_config, tracker_login

WORDPRESS_FORM = """
<form name="loginform" id="loginform" action="http://wp.test/wp-login.php" method="post">
  <p><label for="user_login">Username or Email Address</label>
  <input type="text" name="log" id="user_login" class="input" value="" size="20"></p>
  <div class="user-pass-wrap"><input type="password" name="pwd" id="user_pass" value=""></div>
  <p class="forgetmenot"><input name="rememberme" type="checkbox" id="rememberme" value="forever">
  <p class="submit"><input type="submit" name="wp-submit" id="wp-submit" value="Log In">
  <input type="hidden" name="redirect_to" value="http://wp.test/wp-admin/">
  <input type="hidden" name="testcookie" value="1"></p>
</form>
"""

DJANGO_PAGE = """
<form role="search" action="/search"><input name="q" type="search"></form>
<form method="post" action="/accounts/signup/">
  <input name="username"><input type="password" name="password1">
  <input type="password" name="password2"></form>
<form method="post" action="">
  <input type="hidden" name="csrfmiddlewaretoken" value="abc&amp;def">
  <input type="text" name="username" autofocus maxlength="150" required>
  <input type="password" name="password" required>
  <input type="hidden" name="next" value="/orders/">
  <button type="submit">Log in</button>
</form>
"""


def answer(status: int, cookies: list[str], body: object = None) -> UpstreamAnswer:
    headers = CIMultiDictProxy(CIMultiDict(("Set-Cookie", c) for c in cookies))
    raw = orjson.dumps(body) if body is not None else b""
    return UpstreamAnswer(status, "", headers, raw, True)


def test_the_wordpress_form_is_found_and_sent_as_a_browser_would() -> None:
    """log/pwd are found; hidden fields and the clicked button are sent, the checkbox is not."""
    form = find_login_form(WORDPRESS_FORM, "http://wp.test/wp-login.php")
    assert form is not None
    assert (form.path, form.method, form.identifier, form.password) == (
        "/wp-login.php",
        "POST",
        "log",
        "pwd",
    )
    assert form.hidden == ("redirect_to", "testcookie")
    assert parse_qsl(form.body("bob", "p&w d").decode()) == [
        ("log", "bob"),
        ("pwd", "p&w d"),
        ("wp-submit", "Log In"),
        ("redirect_to", "http://wp.test/wp-admin/"),
        ("testcookie", "1"),
    ]


def test_search_and_signup_forms_are_skipped() -> None:
    """The form with one password field wins; an empty action posts to the page itself."""
    form = find_login_form(DJANGO_PAGE, "http://site.test/accounts/login/?next=/orders/")
    assert form is not None
    assert form.action == "http://site.test/accounts/login/?next=/orders/"
    assert form.path == "/accounts/login/"
    assert (form.identifier, form.password) == ("username", "password")
    assert dict(parse_qsl(form.body("u", "p").decode()))["csrfmiddlewaretoken"] == "abc&def"


def test_a_page_without_a_login_form_gives_none() -> None:
    """No password field, no login form."""
    assert find_login_form("<form><input name=q></form><p>hi", "http://x.test/") is None


def test_hashed_cookie_names_become_a_prefix_rule() -> None:
    """WordPress's per-site cookie name gives cookie_prefix; the refused answer fails the rule."""
    good = answer(
        302,
        [
            "wordpress_test_cookie=WP%20Cookie%20check; path=/",
            "wordpress_0123456789abcdef0123456789abcdef=u; path=/wp-admin",
            "wordpress_logged_in_0123456789abcdef0123456789abcdef=u; path=/",
        ],
    )
    bad = answer(200, ["wordpress_test_cookie=WP%20Cookie%20check; path=/"])
    rules = propose_success(good, bad)
    assert rules is not None
    assert (rules.status, rules.cookie, rules.cookie_prefix) == (
        (302,),
        None,
        "wordpress_logged_in_",
    )
    assert judge(good, rules) and not judge(bad, rules)


def test_json_logins_get_a_pointer_rule() -> None:
    """A JSON answer with ok=true (or a token) gives a json rule."""
    rules = propose_success(answer(200, [], {"ok": True}), answer(200, [], {"ok": False}))
    assert rules is not None and rules.json == "/ok" and rules.status == ()
    rules = propose_success(
        answer(200, [], {"access_token": "t", "token_type": "bearer"}),
        answer(401, [], {"detail": "Incorrect username or password"}),
    )
    assert rules is not None and (rules.status, rules.json) == ((200,), "/access_token")


def test_alike_answers_give_no_rule() -> None:
    """When nothing tells the answers apart, no rule is proposed."""
    assert propose_success(answer(200, []), answer(200, [])) is None


def _loads_as_config(block: str) -> None:
    login = tomllib.loads(block)["login"]
    parse_config({**EXAMPLE, "login": login}, {"AUTHSHIM_SECRET": SECRET})


def test_the_block_without_try_is_a_valid_config() -> None:
    """The proposed block, pasted into a config, loads."""
    form = find_login_form(WORDPRESS_FORM, "http://wp.test/wp-login.php")
    assert form is not None
    block = login_block(form)
    assert 'next_param = "redirect_to"' in block
    _loads_as_config(block)


async def test_try_against_the_fake_legacy_site(
    legacy_server: TestServer, legacy: FakeLegacy
) -> None:
    """One real login and one wrong one give status+cookie rules and the /api/me profile."""
    out = io.StringIO()
    url = str(legacy_server.make_url("/accounts/login/"))
    assert await discover(url, user="bob", password="builder-22", out=out) == 0
    text = out.getvalue()
    assert (
        'success = { status = [302], cookie = "sessionid", '
        'location = { not_prefix = "/accounts/login/" } }'
    ) in text
    assert 'failure = { redirect = "/accounts/login/" }' in text
    assert 'profile = { fetch = "/api/me" }' in text
    assert "checked: these success rules hold for the right password only" in text
    _loads_as_config(text)
    assert len(legacy.logins()) == 2 and legacy.logins()[0].cookies["csrftoken"]


async def test_the_command_reads_the_password_from_stdin(
    legacy_server: TestServer, tmp_path: Path
) -> None:
    """`authshim discover URL --try USER` takes the password on stdin, never in argv."""
    url = str(legacy_server.make_url("/accounts/login/"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.cli", "discover", url, "--try", "carol",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(b"singer-333\n"), 60)
    assert proc.returncode == 0, out
    assert b'cookie = "sessionid"' in out and b"singer-333" not in out


async def test_a_refused_try_is_reported(legacy_server: TestServer) -> None:
    """When even the given password is refused, discover says it cannot tell success apart."""
    out = io.StringIO()
    url = str(legacy_server.make_url("/accounts/login/"))
    assert await discover(url, user="bob", password="not-it", out=out) == 1
    assert "no success rule tells them apart" in out.getvalue()


async def test_no_form_at_the_url(legacy_server: TestServer) -> None:
    """A page without a login form exits 1 and says so."""
    out = io.StringIO()
    assert await discover(str(legacy_server.make_url("/x")), user=None, password=None, out=out)
    assert "no login form" in out.getvalue()


async def test_try_against_the_tracker(
    tracker_server: TestServer, tracker: Tracker, start_tracker: StartTracker
) -> None:
    """Against the Rails-like tracker: what the two answers share is printed, the proposed
    rules add location.not_prefix = the login page, and in front of the tracker they capture
    user4 but not the locked user, whose right password is sent back to /login."""
    out = io.StringIO()
    url = str(tracker_server.make_url("/login"))
    assert await discover(url, user="user4", password="user4-password", out=out) == 0
    text = out.getvalue()
    assert "could not tell apart by cookies set (both set _tracker_session)" in text
    assert 'success = { status = [302], location = { not_prefix = "/login" } }' in text
    assert "# failure: a wrong password gets a 200 page" in text
    assert "step = { location" in text  # the second-factor hint
    block = tomllib.loads(text)["login"][0]
    assert block["failure"] == {"redirect": "/login"}
    proxy = await start_tracker(tracker_config(success=block["success"]))
    await tracker_login(proxy, "locked", "locked-password")
    await tracker_login(proxy, "user4", "user4-password")
    assert await proxy.svc.store.find_user("locked") is None
    assert await proxy.svc.store.find_user("user4") is not None


def test_a_json_refusal_is_the_proposed_failure() -> None:
    """A wrong password answered 401 with JSON is proposed as failure as it came."""
    bad = answer(401, [], body={"error": "invalid"})
    failure, _ = propose_failure(bad, "http://x.test/api/login")
    assert failure == {"status": 401, "json": {"error": "invalid"}}
    headers = CIMultiDictProxy(CIMultiDict([("Location", "/login?failed=1")]))
    moved = UpstreamAnswer(302, "", headers, b"", True)
    assert propose_failure(moved, "http://x.test/login")[0] == {"redirect": "/login?failed=1"}
