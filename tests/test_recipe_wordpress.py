"""The WordPress recipe: Debian's WordPress (apache2, PHP, MariaDB) behind authshim."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.commands.discover import discover
from proxy.modes import write_mode
from tests.accounts import read_mail, settle
from tests.fixtures.proxy import Proxy
from tests.fixtures.realapps import (
    choose_password,
    free_port,
    mailed_link,
    origin,
    recipe_config,
    running,
)
from tests.fixtures.wordpress import USERS, Site, missing, wordpress

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """WordPress with bob, carol and alice, on a free port with its own database."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with wordpress() as running_site:
        yield running_site


def _config(site: Site, tmp_path: Path, upstream: str | None = None) -> Any:
    return recipe_config(
        "wordpress/authshim.toml",
        upstream=upstream or site.url,
        store_url=f"sqlite:///{tmp_path / 'a.db'}",
        env={"WP_LOOKUP_AUTH": site.lookup_auth},
        mail_folder=tmp_path / "outbox",
    )


async def wp_login(proxy: Proxy, log: str, pwd: str) -> Any:
    """GET wp-login.php (its test cookie), then POST the form as a browser does."""
    async with proxy.client.get(proxy.url("/wp-login.php")) as page:
        html = await page.text()
    redirect_to = re.search(r'name="redirect_to" value="([^"]*)"', html)
    assert redirect_to, html
    form = {
        "log": log,
        "pwd": pwd,
        "wp-submit": "Log In",
        "redirect_to": redirect_to.group(1),
        "testcookie": "1",
    }
    async with proxy.client.post(
        proxy.url("/wp-login.php"),
        data=form,
        allow_redirects=False,
        headers={"Origin": origin(proxy)},
    ) as response:
        await response.read()
        return response


async def me(proxy: Proxy, **kw: Any) -> tuple[int, Any]:
    """The REST API's current user, as WordPress sees the request."""
    async with proxy.client.get(proxy.url("/?rest_route=/wp/v2/users/me"), **kw) as response:
        return response.status, await response.json()


async def test_capture_local_answer_identity_and_cutover(site: Site, tmp_path: Path) -> None:
    """wp-login.php is captured (profile by the REST look-up), then answered by authshim;
    WordPress trusts the header through the must-use plugin; the cut-over needs no WordPress."""
    async with running(_config(site, tmp_path)) as proxy:
        first = await wp_login(proxy, "bob", USERS["bob"])
        assert first.status == 302
        # WordPress redirects (a subscriber to their profile) to its own address; the client
        # is sent to authshim's instead.
        assert first.headers["Location"] == f"{origin(proxy)}/wp-admin/profile.php"
        assert any(c.startswith("wordpress_logged_in_") for c in first.cookies)
        user = await proxy.svc.store.find_user("bob")
        assert user is not None and user.email == "bob@example.com" and user.legacy_id == "2"
        assert proxy.session_cookie()

        proxy.client.cookie_jar.clear()
        second = await wp_login(proxy, "bob@example.com", USERS["bob"])
        assert second.status == 302 and second.headers["Location"] == "/wp-admin/"
        assert not any(c.startswith("wordpress_") for c in second.cookies)
        assert proxy.svc.counters.totals["login.local_ok"] == 1
        status, body = await me(proxy)
        assert (status, body["name"]) == (200, "bob")
        async with proxy.client.get(proxy.url("/wp-admin/profile.php")) as page:
            assert page.status == 200 and 'id="user_login" value="bob"' in await page.text()

        proxy.client.cookie_jar.clear()
        refused = await wp_login(proxy, "bob", "not-his-password")
        assert refused.headers["Location"] == "/wp-login.php?authshim=failed"
        # SECURITY: a client's own X-Forwarded-User is stripped, so it names nobody.
        status, _ = await me(proxy, headers={"X-Forwarded-User": "admin"})
        assert status == 401

        unknown = await wp_login(proxy, "nobody", "whatever-123")
        assert unknown.status == 200 and proxy.session_cookie() is None

    dead = f"http://127.0.0.1:{free_port()}"
    async with running(_config(site, tmp_path, upstream=dead)) as proxy:
        await write_mode(proxy.svc.store, "cutover")
        await proxy.svc.modes.refresh()
        form = {"log": "bob", "pwd": USERS["bob"], "testcookie": "1"}
        async with proxy.client.post(
            proxy.url("/wp-login.php"), data=form, allow_redirects=False
        ) as response:
            assert response.headers["Location"] == "/wp-admin/"
        form = {"log": "carol", "pwd": USERS["carol"], "testcookie": "1"}
        async with proxy.client.post(
            proxy.url("/wp-login.php"), data=form, allow_redirects=False
        ) as response:
            assert response.headers["Location"] == "/wp-login.php?authshim=failed"


async def test_email_logins_use_the_lookup_by_email(site: Site, tmp_path: Path) -> None:
    """Logging in with an email finds the profile by the REST search, a list, at /0; an
    empty list is "not found"."""
    async with running(_config(site, tmp_path)) as proxy:
        response = await wp_login(proxy, "carol@example.com", USERS["carol"])
        assert response.status == 302
        user = await proxy.svc.store.find_user("carol")
        assert user is not None and user.profile["username"] == "carol"
        assert proxy.svc.lookup is not None
        assert await proxy.svc.lookup.by_username("nobody") is None
        assert await proxy.svc.lookup.by_email("nobody@example.com") is None


async def test_discover_proposes_the_recipe_rules(site: Site) -> None:
    """`authshim discover --try` finds log/pwd, proposes the cookie prefix, and finds no
    profile source (REST needs a nonce with cookies), pointing at the look-up."""
    out = io.StringIO()
    code = await discover(
        f"{site.url}/wp-login.php", user="alice", password=USERS["alice"], out=out
    )
    text = out.getvalue()
    assert code == 0, text
    assert 'identifier = "log"' in text and 'password = "pwd"' in text
    assert 'success = { status = [302], cookie_prefix = "wordpress_logged_in_"' in text
    assert "passed through untouched: redirect_to, testcookie" in text
    assert "no profile source named the user" in text


LOST_PASSWORD = "/wp-login.php?action=lostpassword"


async def lost_password(proxy: Proxy, user_login: str) -> tuple[int, str]:
    """WordPress's "Lost your password?" form as a browser uses it (the page from WordPress,
    the POST through authshim); return status and Location once the work behind it is done."""
    async with proxy.client.get(proxy.url(LOST_PASSWORD)) as page:
        html = await page.text()
    action = re.search(r'id="lostpasswordform" action="([^"]+)"', html)
    # The form posts to the login's path, told apart by its query.
    assert action and action.group(1).endswith(LOST_PASSWORD), html
    form = {"user_login": user_login, "redirect_to": "", "wp-submit": "Get New Password"}
    async with proxy.client.post(
        proxy.url(LOST_PASSWORD), data=form, allow_redirects=False,
        headers={"Origin": origin(proxy)},
    ) as response:  # fmt: skip
        await response.read()
    await settle(proxy)
    return response.status, response.headers.get("Location", "")


async def test_lost_password_migrates_an_unmigrated_user_who_then_logs_in_locally(
    site: Site, tmp_path: Path
) -> None:
    """An unmigrated user's "Lost your password?" is answered by authshim and mailed through
    the REST look-up; the new password creates them in the store (source reset), their next
    login never reaches WordPress, and WordPress knows them by the header."""
    async with running(_config(site, tmp_path)) as proxy:
        assert await lost_password(proxy, "alice@example.com") == (
            302, "/wp-login.php?checkemail=confirm",
        )  # fmt: skip
        async with proxy.client.get(proxy.url("/wp-login.php?checkemail=confirm")) as page:
            assert "Check your email for the confirmation link" in await page.text()
        assert site.requests(f"POST {LOST_PASSWORD}") == 0
        link = await mailed_link(tmp_path / "outbox", "alice@example.com")
        assert await proxy.svc.store.find_user("alice") is None

        assert await choose_password(proxy, link, "alice-new-wp-pass") == (302, "/wp-login.php")
        user = await proxy.svc.store.find_user("alice")
        assert user is not None and user.source == "reset" and user.email == "alice@example.com"
        assert user.legacy_id and user.profile["username"] == "alice"

        # WordPress still has the old password; authshim alone knows the new one.
        refused = await wp_login(proxy, "alice", USERS["alice"])
        assert refused.headers["Location"] == "/wp-login.php?authshim=failed"
        posts = site.requests("POST /wp-login.php ")
        response = await wp_login(proxy, "alice", "alice-new-wp-pass")
        assert response.status == 302 and response.headers["Location"] == "/wp-admin/"
        assert not any(c.startswith("wordpress_") for c in response.cookies)
        assert proxy.svc.counters.totals["login.local_ok"] == 1
        seen = site.requests("GET /?rest_route=/wp/v2/users/me")
        status, body = await me(proxy)
        assert (status, body["name"]) == (200, "alice")
        await _logged(site, "GET /?rest_route=/wp/v2/users/me", seen + 1)
        assert site.requests("POST /wp-login.php ") == posts  # the login never reached it


async def test_lost_password_by_username_and_for_nobody(site: Site, tmp_path: Path) -> None:
    """user_login may be a username (looked up by slug) as well as an email; a name nobody
    has gets the same answer and no mail."""
    async with running(_config(site, tmp_path)) as proxy:
        known = await lost_password(proxy, "carol")
        unknown = await lost_password(proxy, "nobody")
        assert known == unknown == (302, "/wp-login.php?checkemail=confirm")
        link = await mailed_link(tmp_path / "outbox", "carol@example.com")
        assert [m["To"] for m in read_mail(tmp_path / "outbox")] == ["carol@example.com"]
        assert proxy.svc.counters.totals["reset.issue.unknown"] == 1
        assert await choose_password(proxy, link, "carol-new-wp-pass") == (302, "/wp-login.php")
        response = await wp_login(proxy, "carol@example.com", "carol-new-wp-pass")
        assert response.headers["Location"] == "/wp-admin/"
        user = await proxy.svc.store.find_user("carol")
        assert user is not None and user.source == "reset"


async def _logged(site: Site, line: str, count: int) -> None:
    """Wait until apache2 has logged ``count`` requests starting with ``line``."""
    for _ in range(100):
        if site.requests(line) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"apache2 logged {site.requests(line)} of {count} {line!r}")


@pytest.mark.parametrize("extra", ["&+log=carol", "&log%00x=carol", "&%20%20log=carol"])
async def test_a_second_spelling_of_log_cannot_capture_another_user(
    site: Site, tmp_path: Path, extra: str
) -> None:
    """Real PHP reads `` log`` and ``log\\0x`` as ``log``, the last one winning: WordPress
    checked carol while a naive proxy captured bob with carol's password (seen on the old
    main). authshim refuses the request before WordPress hears of it."""
    async with running(_config(site, tmp_path)) as proxy:
        async with proxy.client.get(proxy.url("/wp-login.php")) as page:
            await page.read()
        body = f"log=bob&pwd={USERS['carol']}&testcookie=1{extra}"
        before = site.requests("POST /wp-login.php")
        async with proxy.client.post(
            proxy.url("/wp-login.php"), data=body.encode(), allow_redirects=False,
            headers={"Origin": origin(proxy),
                     "Content-Type": "application/x-www-form-urlencoded"},
        ) as response:  # fmt: skip
            await response.read()
        assert response.status == 400
        assert site.requests("POST /wp-login.php") == before
        assert await proxy.svc.store.find_user("bob") is None


async def test_a_login_posted_to_the_lost_password_route_is_refused(
    site: Site, tmp_path: Path
) -> None:
    """``?action=lostpassword`` with ``action=login`` in the body: wp-login.php takes
    ``$_REQUEST['action']``, where the body wins, and checks the password, uncounted by the
    limits; authshim refuses the disagreement."""
    async with running(_config(site, tmp_path)) as proxy:
        before = site.requests("POST /wp-login.php")
        async with proxy.client.post(
            proxy.url("/wp-login.php?action=lostpassword"),
            data={"action": "login", "log": "bob", "pwd": "guess-1", "user_login": "bob"},
            allow_redirects=False, headers={"Origin": origin(proxy)},
        ) as response:  # fmt: skip
            await response.read()
        assert response.status == 400
        assert site.requests("POST /wp-login.php") == before


async def test_logout_by_action_ends_both_sessions(site: Site, tmp_path: Path) -> None:
    """``GET wp-login.php?action=logout`` is the recipe's [logout] (when action=logout):
    authshim's session cookie stops working; the login page itself still renders."""
    async with running(_config(site, tmp_path)) as proxy:
        await wp_login(proxy, "bob", USERS["bob"])  # captured
        proxy.client.cookie_jar.clear()
        await wp_login(proxy, "bob", USERS["bob"])  # answered by authshim
        cookie = proxy.session_cookie()
        assert cookie is not None and (await me(proxy))[0] == 200
        async with proxy.client.get(
            proxy.url("/wp-login.php?action=logout"), allow_redirects=False
        ) as response:
            await response.read()
        status, _ = await me(proxy, headers={"Cookie": f"authshim={cookie}"})
        assert status == 401
        async with proxy.client.get(proxy.url("/wp-login.php")) as page:
            assert page.status == 200 and "user_login" in await page.text()
        assert proxy.svc.counters.totals["logout"] == 1
