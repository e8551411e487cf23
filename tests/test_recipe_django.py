"""The Django recipe: the real django.contrib.auth site of recipes/django behind authshim."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.commands.discover import discover
from proxy.modes import write_mode
from tests.accounts import read_mail, settle
from tests.fixtures.proxy import Proxy
from tests.fixtures.realapps import (
    RECIPES,
    choose_password,
    free_port,
    mailed_link,
    origin,
    recipe_config,
    running,
    stop,
    wait_for_port,
)

pytestmark = pytest.mark.slow

SITE = RECIPES / "django"
USERS = {"alice": "wonderland-1", "bob": "builder-22", "carol": "singer-333"}
CREATE_USERS = "from django.contrib.auth.models import User\n" + "".join(
    f"User.objects.create_user({u!r}, '{u}@example.com', {p!r}, first_name={u.title()!r})\n"
    for u, p in USERS.items()
)
LOOKUP_AUTH = "Bearer recipe-test-lookup-secret-0123456789"


@dataclass
class DjangoSite:
    url: str
    folder: Path  # Django's own mail (its file backend) and runserver's log
    env: dict[str, str]

    def deactivate(self, username: str) -> None:
        """Set ``is_active = False`` in Django's own database, as an admin would."""
        code = ("from django.contrib.auth import get_user_model; "
                f"get_user_model().objects.filter(username={username!r}).update(is_active=False)")
        subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=SITE,
                       env=self.env, check=True)  # fmt: skip

    def requests(self, line: str) -> int:
        """How many requests runserver has logged whose request line starts with ``line``."""
        log = (self.folder / "runserver.log").read_text(encoding="utf-8", errors="replace")
        return log.count(f'"{line}')

    def own_mail(self) -> list[Path]:
        """The mail Django itself sent (its password reset), if any."""
        return sorted((self.folder / "mail").glob("*"))


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoSite]:
    """The recipe's Django site, migrated, with three users, on a free port."""
    folder = tmp_path_factory.mktemp("django")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "legacysite.settings",
        "LEGACY_DB": str(folder / "legacy.sqlite3"),
        "LEGACY_MAIL_DIR": str(folder / "mail"),
        "LEGACY_LOOKUP_AUTH": LOOKUP_AUTH,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=SITE, env=env, check=True)
    subprocess.run([*manage, "shell", "-c", CREATE_USERS], cwd=SITE, env=env, check=True)
    port = free_port()
    log = (folder / "runserver.log").open("wb")
    proc = subprocess.Popen(
        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=SITE, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        yield DjangoSite(f"http://127.0.0.1:{port}", folder, env)
    finally:
        stop(proc)
        log.close()


def _config(upstream: str, tmp_path: Path) -> Any:
    return recipe_config(
        "django/authshim.toml",
        upstream=upstream,
        store_url=f"sqlite:///{tmp_path / 'a.db'}",
        env={"LEGACY_LOOKUP_AUTH": LOOKUP_AUTH},
        mail_folder=tmp_path / "outbox",
    )


async def form_login(proxy: Proxy, username: str, password: str) -> Any:
    """GET the login page for its CSRF token, then POST the form as a browser does."""
    async with proxy.client.get(proxy.url("/accounts/login/?next=/private/")) as page:
        html = await page.text()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert token, html
    form = {
        "csrfmiddlewaretoken": token.group(1),
        "username": username,
        "password": password,
        "next": "/private/",
    }
    async with proxy.client.post(
        proxy.url("/accounts/login/"),
        data=form,
        allow_redirects=False,
        headers={"Origin": origin(proxy), "Referer": proxy.url("/accounts/login/")},
    ) as response:
        await response.read()
        return response


async def text(proxy: Proxy, path: str, **kw: Any) -> tuple[int, str]:
    async with proxy.client.get(proxy.url(path), allow_redirects=False, **kw) as response:
        return response.status, await response.text()


async def test_form_login_capture_local_answer_identity_and_cutover(
    django_site: DjangoSite, tmp_path: Path
) -> None:
    """LoginView with CSRF is captured, then answered by authshim; Django trusts the header;
    after the cut-over a migrated user logs in with the legacy site unreachable."""
    config = _config(django_site.url, tmp_path)
    async with running(config) as proxy:
        first = await form_login(proxy, "bob", USERS["bob"])
        assert first.status == 302 and first.headers["Location"] == "/private/"
        assert "sessionid" in first.cookies and proxy.session_cookie()
        user = await proxy.svc.store.find_user("bob")
        assert user is not None and user.email == "bob@example.com" and user.legacy_id
        assert await text(proxy, "/private/") == (200, "private page of bob (via ModelBackend)\n")

        proxy.client.cookie_jar.clear()
        second = await form_login(proxy, "bob", USERS["bob"])
        assert second.status == 302 and second.headers["Location"] == "/private/"
        assert "sessionid" not in second.cookies and proxy.session_cookie()
        assert proxy.svc.counters.totals["login.local_ok"] == 1
        # Django never saw this login: it knows bob only from authshim's header.
        status, body = await text(proxy, "/private/")
        assert (status, body) == (200, "private page of bob (via AuthshimUserBackend)\n")

        proxy.client.cookie_jar.clear()
        refused = await form_login(proxy, "bob", "not-his-password")
        assert refused.headers["Location"] == "/accounts/login/?error=1"
        # SECURITY: a client's own X-Forwarded-User is stripped, so it names nobody.
        status, _ = await text(proxy, "/private/", headers={"X-Forwarded-User": "alice"})
        assert status == 302

    # Cut-over: the legacy login is switched off; here the legacy site is not even reachable.
    dead = f"http://127.0.0.1:{free_port()}"
    async with running(_config(dead, tmp_path)) as proxy:
        await write_mode(proxy.svc.store, "cutover")
        await proxy.svc.modes.refresh()
        async with proxy.client.post(
            proxy.url("/accounts/login/"),
            data={"username": "bob", "password": USERS["bob"]},
            allow_redirects=False,
        ) as response:
            assert response.status == 302 and response.headers["Location"] == "/private/"
        async with proxy.client.post(
            proxy.url("/accounts/login/"),
            data={"username": "carol", "password": USERS["carol"]},
            allow_redirects=False,
        ) as response:
            assert response.headers["Location"] == "/accounts/login/?error=1"


async def test_json_login_and_the_profile_by_header(
    django_site: DjangoSite, tmp_path: Path
) -> None:
    """The site's JSON login is captured from the answer; /api/me then knows the user by header."""
    async with running(_config(django_site.url, tmp_path)) as proxy:
        body = {"username": "carol", "password": USERS["carol"]}
        async with proxy.client.post(proxy.url("/api/login"), json=body) as response:
            assert response.status == 200 and (await response.json())["ok"] is True
        assert await proxy.svc.store.find_user("carol@example.com") is not None

        proxy.client.cookie_jar.clear()
        async with proxy.client.post(proxy.url("/api/login"), json=body) as response:
            answer = await response.json()
        assert answer["ok"] is True and answer["user"]["username"] == "carol"
        assert "sessionid" not in response.cookies
        async with proxy.client.get(proxy.url("/api/me")) as response:
            assert (await response.json())["email"] == "carol@example.com"

        wrong = {"username": "carol", "password": "wrong"}
        async with proxy.client.post(proxy.url("/api/login"), json=wrong) as response:
            assert (response.status, await response.json()) == (401, {"ok": False})


async def test_discover_proposes_the_recipe_rules(django_site: DjangoSite) -> None:
    """`authshim discover --try` against the real LoginView proposes the recipe's rules."""
    out = io.StringIO()
    code = await discover(
        f"{django_site.url}/accounts/login/", user="alice", password=USERS["alice"], out=out
    )
    text = out.getvalue()
    assert code == 0, text
    assert 'identifier = "username"' in text and 'password = "password"' in text
    assert 'success = { status = [302], cookie = "sessionid"' in text
    assert 'profile = { fetch = "/api/me" }' in text
    assert "passed through untouched: csrfmiddlewaretoken, next" in text


async def ask_for_reset(proxy: Proxy, email: str) -> tuple[int, str, str]:
    """Django's "forgot password" form as a browser uses it (the page and its CSRF token from
    Django, the POST through authshim); return status, Location and body once the work behind
    the answer is done."""
    async with proxy.client.get(proxy.url("/accounts/password_reset/")) as page:
        html = await page.text()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert page.status == 200 and token, html
    async with proxy.client.post(
        proxy.url("/accounts/password_reset/"),
        data={"csrfmiddlewaretoken": token.group(1), "email": email},
        allow_redirects=False,
        headers={"Origin": origin(proxy), "Referer": proxy.url("/accounts/password_reset/")},
    ) as response:
        answer = response.status, response.headers.get("Location", ""), await response.text()
    await settle(proxy)
    return answer


async def test_reset_migrates_an_unmigrated_user_who_then_logs_in_locally(
    django_site: DjangoSite, tmp_path: Path
) -> None:
    """An unmigrated user's reset is mailed through the look-up, creates them in the store
    (source reset) on authshim's page, and their next login is answered without Django, which
    knows them by the header."""
    async with running(_config(django_site.url, tmp_path)) as proxy:
        assert await ask_for_reset(proxy, "alice@example.com") == (
            302, "/accounts/password_reset/done/", "",
        )  # fmt: skip
        status, done = await text(proxy, "/accounts/password_reset/done/")
        assert status == 200 and "emailed you instructions" in done
        link = await mailed_link(tmp_path / "outbox", "alice@example.com")
        assert link.startswith("http://127.0.0.1:8080/.authshim/reset?token=")  # reset.link
        assert await proxy.svc.store.find_user("alice") is None  # nothing before the new password

        assert await choose_password(proxy, link, "alice-new-pass-1") == (
            302, "/accounts/reset/done/",
        )  # fmt: skip
        status, done = await text(proxy, "/accounts/reset/done/")
        assert status == 200 and "Your password has been set." in done
        user = await proxy.svc.store.find_user("alice@example.com")
        assert user is not None and user.source == "reset" and user.username == "alice"
        assert user.profile["first_name"] == "Alice" and user.legacy_id

        # Django still has the old password; authshim alone knows the new one.
        refused = await form_login(proxy, "alice", USERS["alice"])
        assert refused.headers["Location"] == "/accounts/login/?error=1"
        posts = django_site.requests("POST /accounts/login/")
        response = await form_login(proxy, "alice", "alice-new-pass-1")
        assert response.status == 302 and response.headers["Location"] == "/private/"
        assert "sessionid" not in response.cookies and proxy.session_cookie()
        assert proxy.svc.counters.totals["login.local_ok"] == 1
        status, body = await text(proxy, "/private/")
        assert (status, body) == (200, "private page of alice (via AuthshimUserBackend)\n")
        # runserver logged /private/ after the login, and still no login POST reached Django.
        assert django_site.requests("GET /private/") >= 1
        assert django_site.requests("POST /accounts/login/") == posts
        assert django_site.own_mail() == []  # Django's own reset never ran


async def test_reset_of_a_migrated_user_sets_the_hash_and_ends_sessions(
    django_site: DjangoSite, tmp_path: Path
) -> None:
    """A migrated user's reset replaces the stored hash and ends their authshim sessions; the
    old password stops working and the new one works locally."""
    async with running(_config(django_site.url, tmp_path)) as proxy:
        assert (await form_login(proxy, "bob", USERS["bob"])).headers["Location"] == "/private/"
        old_session = proxy.session_cookie()
        before = await proxy.svc.store.find_user("bob")
        assert before is not None and before.source == "login" and old_session
        proxy.client.cookie_jar.clear()

        assert (await ask_for_reset(proxy, "Bob@Example.com"))[:2] == (
            302, "/accounts/password_reset/done/",
        )  # fmt: skip
        link = await mailed_link(tmp_path / "outbox", "bob@example.com")
        assert await choose_password(proxy, link, "bob-new-pass-22") == (
            302, "/accounts/reset/done/",
        )  # fmt: skip

        after = await proxy.svc.store.find_user("bob")
        assert after is not None and after.id == before.id and after.source == "login"
        assert after.password_hash != before.password_hash
        async with proxy.client.get(
            proxy.url("/.authshim/session"), headers={"Cookie": f"authshim={old_session}"}
        ) as response:
            assert response.status == 401
        refused = await form_login(proxy, "bob", USERS["bob"])
        assert refused.headers["Location"] == "/accounts/login/?error=1"
        response = await form_login(proxy, "bob", "bob-new-pass-22")
        assert response.headers["Location"] == "/private/" and "sessionid" not in response.cookies
        assert await text(proxy, "/private/") == (
            200, "private page of bob (via AuthshimUserBackend)\n",
        )  # fmt: skip


async def test_an_unknown_email_gets_the_same_answer(
    django_site: DjangoSite, tmp_path: Path
) -> None:
    """A reset for an email nobody has gets the very answer a legacy user's gets, and no mail."""
    async with running(_config(django_site.url, tmp_path)) as proxy:
        known = await ask_for_reset(proxy, "carol@example.com")
        unknown = await ask_for_reset(proxy, "nobody@example.com")
        assert known == unknown == (302, "/accounts/password_reset/done/", "")
        await mailed_link(tmp_path / "outbox", "carol@example.com")
        assert [m["To"] for m in read_mail(tmp_path / "outbox")] == ["carol@example.com"]
        totals = proxy.svc.counters.totals
        assert totals["reset.issue.mailed_legacy"] == 1 and totals["reset.issue.unknown"] == 1
        assert django_site.own_mail() == []
        assert django_site.requests("POST /accounts/password_reset/") == 0
        # SECURITY: the look-up is reachable through authshim too, but only with the secret.
        for auth in ({}, {"Authorization": "Bearer guessed"}):
            status, _ = await text(proxy, "/internal/users?email=carol@example.com", headers=auth)
            assert status == 403


async def test_a_user_deactivated_in_django_is_refused_after_the_refresh(
    django_site: DjangoSite, tmp_path: Path
) -> None:
    """[profile] active = /is_active with refresh_on_login: once Django deactivates a migrated
    user, the refreshed profile says so and authshim refuses the local login too."""
    async with running(_config(django_site.url, tmp_path)) as proxy:
        assert (await form_login(proxy, "carol", USERS["carol"])).status == 302  # captured
        django_site.deactivate("carol")
        proxy.client.cookie_jar.clear()
        assert (await form_login(proxy, "carol", USERS["carol"])).status == 302  # stale profile
        for _ in range(50):  # the refresh runs behind the answer
            user = await proxy.svc.store.find_user("carol")
            if user is not None and user.profile.get("is_active") is False:
                break
            await asyncio.sleep(0.1)
        proxy.client.cookie_jar.clear()
        refused = await form_login(proxy, "carol", USERS["carol"])
        assert refused.headers["Location"] == "/accounts/login/?error=1"
        assert proxy.svc.counters.totals["login.inactive"] == 1
