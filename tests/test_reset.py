"""Password reset: tokens mailed from the outbox, authshim's page, migration by reset."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from proxy.modes import write_mode
from tests.accounts import (
    accounts,
    confirm_reset,
    post_form,
    read_mail,
    request_reset,
    settle,
    token_of,
    wait_for_mail,
)
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy
from tests.fixtures.tracker import COOKIE, StartTracker, Tracker, tracker_config

PLAIN = {"status": [302], "cookie": COOKIE}


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
async def proxy(start_proxy: StartProxy, outbox: Path) -> Proxy:
    """authshim with the example's reset, mail, sign-up and password-change sections."""
    result: Proxy = await start_proxy(accounts(outbox))
    return result


async def migrate(proxy: Proxy, username: str, password: str) -> None:
    """Capture a legacy user with one login, then forget the browser's cookies."""
    response = await proxy.form_login(username, password)
    assert response.status == 302 and proxy.session_cookie()
    proxy.client.cookie_jar.clear()


async def session_status(proxy: Proxy, cookie: str) -> int:
    async with proxy.client.get(
        proxy.url("/.authshim/session"), headers={"Cookie": f"authshim={cookie}"}
    ) as response:
        return response.status


async def test_reset_for_a_migrated_user(proxy: Proxy, legacy: FakeLegacy, outbox: Path) -> None:
    """A migrated user gets a mail, sets a new password on authshim's page, and loses every
    session; the new password works locally and the old one no longer does."""
    await proxy.form_login("bob", "builder-22")
    old_session = proxy.session_cookie()
    assert old_session is not None
    proxy.client.cookie_jar.clear()

    assert await request_reset(proxy, "Bob@Example.com") == (302, "/accounts/password_reset/done/")
    [mail] = await wait_for_mail(outbox)
    assert mail["To"] == "bob@example.com" and mail["From"] == "noreply@example.com"
    token = token_of(mail)
    assert legacy.posts("/accounts/password_reset/") == []

    async with proxy.client.get(proxy.url(f"/.authshim/reset?token={token}")) as page:
        html = await page.text()
        assert page.status == 200 and 'name="password"' in html and " hidden" not in html
        assert page.headers["Referrer-Policy"] == "no-referrer"
    assert await confirm_reset(proxy, token, "brand-new-pass") == (302, "/accounts/login/", "")

    assert await session_status(proxy, old_session) == 401
    assert (await proxy.form_login("bob", "builder-22")).headers["Location"] == (
        "/accounts/login/?error=1"
    )
    assert (await proxy.form_login("bob", "brand-new-pass")).headers["Location"] == "/private/"
    assert len(legacy.logins()) == 1


async def test_reset_migrates_a_legacy_user_the_lookup_finds(
    proxy: Proxy, legacy: FakeLegacy, outbox: Path
) -> None:
    """An unmigrated user found by the look-up is created by the reset (source reset) with the
    legacy profile, and then logs in locally without the legacy app."""
    assert await request_reset(proxy, "alice@example.com") == (
        302,
        "/accounts/password_reset/done/",
    )
    [mail] = await wait_for_mail(outbox)
    assert mail["To"] == "alice@example.com"
    assert await proxy.svc.store.find_user("alice") is None  # nothing stored before the confirm
    status, _, _ = await confirm_reset(proxy, token_of(mail), "new-alice-pass", as_json=True)
    assert status == 200

    user = await proxy.svc.store.find_user("alice")
    assert user is not None and user.source == "reset" and user.legacy_id == "1"
    assert user.profile == {"id": 1, "username": "Alice", "email": "Alice@Example.com"}
    response = await proxy.form_login("alice", "new-alice-pass")
    assert response.headers["Location"] == "/private/" and legacy.logins() == []
    assert legacy.lookups()[0].headers["Authorization"] == "Bearer lookup-secret"


async def test_unknown_email_gets_the_same_answer_in_the_same_time(
    proxy: Proxy, legacy: FakeLegacy, outbox: Path
) -> None:
    """A stored user, a legacy user and nobody get the same answer, in the same time even
    with a slow look-up; only the first two get mail."""
    await migrate(proxy, "bob", "builder-22")
    legacy.lookup_delay = 0.3  # the answer must not wait for it
    addresses = ["bob@example.com", "carol@example.com", "nobody@example.com"]
    answers: dict[str, set[tuple[int, str, str]]] = {a: set() for a in addresses}
    times: dict[str, list[float]] = {a: [] for a in addresses}
    for _ in range(5):  # within the rate limits (reset.address: 5 an hour)
        for address in addresses:
            started = time.perf_counter()
            answer = await post_form(proxy, "/accounts/password_reset/", {"email": address})
            times[address].append(time.perf_counter() - started)
            answers[address].add(answer)
    await settle(proxy)
    assert len({frozenset(a) for a in answers.values()}) == 1
    medians = [statistics.median(t) for t in times.values()]
    # Within noise of each other, and none waited for the look-up.
    assert max(medians) - min(medians) < 0.05 and max(medians) < legacy.lookup_delay, medians
    await wait_for_mail(outbox, 10)
    await asyncio.sleep(0.2)
    messages = read_mail(outbox)
    assert sorted({m["To"] for m in messages}) == ["bob@example.com", "carol@example.com"]
    assert len(messages) == 10


async def test_a_token_works_once(proxy: Proxy, outbox: Path) -> None:
    """A used token is refused the second time, with the page's error and no form."""
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    token = token_of((await wait_for_mail(outbox))[0])
    assert (await confirm_reset(proxy, token, "first-new-pass"))[0] == 302
    status, _, html = await confirm_reset(proxy, token, "second-new-pass")
    assert status == 400 and "invalid or has expired" in html and " hidden" in html
    assert (await confirm_reset(proxy, token, "second-new-pass", as_json=True))[0] == 400
    assert (await proxy.form_login("bob", "first-new-pass")).headers["Location"] == "/private/"


async def test_a_tampered_token_is_refused(proxy: Proxy, outbox: Path) -> None:
    """A token changed in one character, or cut short, is refused; the real one still works."""
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    token = token_of((await wait_for_mail(outbox))[0])
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, token[:20], token + "x", "<script>"):
        async with proxy.client.get(proxy.url("/.authshim/reset"), params={"token": bad}) as page:
            text = await page.text()
            assert page.status == 400 and "<script>" not in text
        assert (await confirm_reset(proxy, bad, "some-new-pass"))[0] == 400
    assert (await confirm_reset(proxy, token, "some-new-pass"))[0] == 302


async def test_an_expired_token_is_refused(
    start_proxy: StartProxy, outbox: Path, legacy: FakeLegacy
) -> None:
    """A token past reset.expires is refused."""
    proxy = await start_proxy(accounts(outbox, expires="1s"))
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    token = token_of((await wait_for_mail(outbox))[0])
    await asyncio.sleep(1.1)
    status, _, html = await confirm_reset(proxy, token, "late-new-pass")
    assert status == 400 and "expired" in html


async def test_a_password_change_retires_older_tokens(proxy: Proxy, outbox: Path) -> None:
    """A token issued before the password changed (by another route) is refused."""
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    token = token_of((await wait_for_mail(outbox))[0])
    await proxy.form_login("bob", "builder-22")
    form = {"old_password": "builder-22", "new_password1": "new-1234", "new_password2": "new-1234"}
    status, location, _ = await post_form(proxy, "/accounts/password_change/", form)
    assert (status, location) == (302, "/accounts/password_change/done/")
    assert (await confirm_reset(proxy, token, "from-the-token"))[0] == 400


async def test_a_second_request_retires_nothing_but_one_use_retires_all(
    proxy: Proxy, outbox: Path
) -> None:
    """Two mails, two live tokens; using one retires the other."""
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    await request_reset(proxy, "bob@example.com")
    first, second = (token_of(m) for m in await wait_for_mail(outbox, 2))
    assert first != second
    assert (await confirm_reset(proxy, second, "second-token-pass"))[0] == 302
    assert (await confirm_reset(proxy, first, "first-token-pass"))[0] == 400


async def test_the_password_policy_applies_and_keeps_the_token(proxy: Proxy, outbox: Path) -> None:
    """Too short or too long is a clear 400; the token still works afterwards."""
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    token = token_of((await wait_for_mail(outbox))[0])
    status, _, html = await confirm_reset(proxy, token, "short")
    assert status == 400 and "at least 8 characters" in html and token in html
    status, _, body = await confirm_reset(proxy, token, "x" * 65, as_json=True)
    assert status == 400 and "at most 64 characters" in body
    assert (await confirm_reset(proxy, token, "long-enough"))[0] == 302


async def test_without_a_lookup_unmigrated_users_are_forwarded(
    start_proxy: StartProxy, legacy: FakeLegacy, outbox: Path
) -> None:
    """Without [lookup], a reset for an email the store lacks goes to the legacy app."""
    proxy = await start_proxy(accounts(outbox, lookup=False))
    await migrate(proxy, "bob", "builder-22")
    assert (await request_reset(proxy, "alice@example.com"))[0] == 302
    assert len(legacy.posts("/accounts/password_reset/")) == 1
    assert (await request_reset(proxy, "bob@example.com"))[0] == 302
    assert len(legacy.posts("/accounts/password_reset/")) == 1
    assert [m["To"] for m in await wait_for_mail(outbox)] == ["bob@example.com"]


async def test_a_lookup_error_sends_nothing_and_is_counted(
    proxy: Proxy, legacy: FakeLegacy, outbox: Path
) -> None:
    """A look-up that fails is reported (counted as lookup_error), not taken for unknown."""
    legacy.lookup_status = 500
    assert (await request_reset(proxy, "alice@example.com"))[0] == 302
    totals = proxy.svc.counters.totals
    assert totals["reset.issue.lookup_error"] == 1 and totals["lookup.error"] == 1
    assert totals["reset.issue.unknown"] == 0
    await asyncio.sleep(0.2)
    assert read_mail(outbox) == []


async def test_the_legacy_confirm_route_forwards_tokens_that_are_not_ours(
    proxy: Proxy, legacy: FakeLegacy, outbox: Path
) -> None:
    """On reset.confirm_path, a legacy token is forwarded untouched; ours gets our page."""
    async with proxy.client.get(proxy.url("/accounts/reset/?token=legacy-made-token")) as answer:
        assert answer.status == 200
        assert (await answer.json())["path"] == "/accounts/reset/?token=legacy-made-token"
    await migrate(proxy, "bob", "builder-22")
    await request_reset(proxy, "bob@example.com")
    token = token_of((await wait_for_mail(outbox))[0])
    async with proxy.client.get(proxy.url(f"/accounts/reset/?token={token}")) as answer:
        assert answer.status == 200 and 'action="/.authshim/reset"' in await answer.text()
    assert len([s for s in legacy.seen if s.path.startswith("/accounts/reset/")]) == 1


async def test_reset_in_cutover_without_the_legacy_app(
    start_proxy: StartProxy, legacy_server: Any, outbox: Path
) -> None:
    """In cut-over with the legacy app down: migrated users reset, others get the same answer
    and no mail, and a malformed body gets 400."""
    proxy = await start_proxy(accounts(outbox))
    await migrate(proxy, "bob", "builder-22")
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    await legacy_server.close()
    for address in ("alice@example.com", "nobody@example.com", "bob@example.com"):
        assert await request_reset(proxy, address) == (302, "/accounts/password_reset/done/")
    [mail] = await wait_for_mail(outbox)
    assert mail["To"] == "bob@example.com"
    assert (await confirm_reset(proxy, token_of(mail), "cutover-pass"))[0] == 302
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": "bob@example.com", "password": "cutover-pass"}
    ) as response:
        assert response.status == 200
    status, _, body = await post_form(proxy, "/accounts/password_reset/", {"mail": "x"})
    assert status == 400 and "email" in body


async def test_neither_token_nor_password_is_stored_or_logged(
    proxy: Proxy, outbox: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store holds only the token's SHA-256 (the outbox a seed, dropped once sent), and no
    log line carries the token or the new password."""
    await migrate(proxy, "bob", "builder-22")
    with caplog.at_level(logging.INFO, logger="authshim"):
        await request_reset(proxy, "bob@example.com")
        token = token_of((await wait_for_mail(outbox))[0])
        await confirm_reset(proxy, token, "secret-new-pass")
    with sqlite3.connect(tmp_path / "authshim.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump and "secret-new-pass" not in dump
    assert '"seed"' not in dump  # the sent mail's seed is gone too
    assert token not in caplog.text and "secret-new-pass" not in caplog.text
    assert '"event":"reset.confirm"' in caplog.text


def tracker_reset(unknown: str) -> Any:
    """[reset] on the tracker's lost-password form, with ``reset.unknown``."""

    def change(raw: dict[str, Any]) -> None:
        raw["reset"].update(request_path="/account/lost_password", email="mail", unknown=unknown)
        del raw["signup"]  # the example's sign-up is the Django site's

    return change


def wrong_api_key(raw: dict[str, Any]) -> None:
    raw["lookup"]["headers"] = {"X-Tracker-API-Key": "not-the-key"}


async def test_unknown_forward_gets_the_legacy_mail_out(
    start_tracker: StartTracker, tracker: Tracker, outbox: Path
) -> None:
    """reset.unknown = "forward": an address the look-up cannot answer for (it is refused) is
    sent on to the tracker's own lost-password form, which mails its user; the client gets the
    configured answer all the same, and authshim mails no one."""
    proxy = await start_tracker(
        accounts(outbox), tracker_config(success=PLAIN), tracker_reset("forward"), wrong_api_key
    )
    status, location, _ = await post_form(
        proxy, "/account/lost_password", {"mail": "User4@example.com", "authenticity_token": "t"}
    )
    await settle(proxy)
    assert (status, location) == (302, "/accounts/password_reset/done/")
    assert tracker.mails == ["user4@example.com"]
    sent = tracker.posts("/account/lost_password")
    assert len(sent) == 1 and b"authenticity_token=t" in sent[0].body
    assert proxy.svc.counters.totals["reset.issue.lookup_error"] == 1
    assert proxy.svc.counters.totals["reset.forward.ok"] == 1
    assert read_mail(outbox) == []


async def test_unknown_forward_leaves_found_users_to_authshim(
    start_tracker: StartTracker, tracker: Tracker, outbox: Path
) -> None:
    """With a working look-up, user4 (found exactly, beside auser4) is mailed by authshim and
    not forwarded; an address nobody has is forwarded, with the same answer."""
    proxy = await start_tracker(
        accounts(outbox), tracker_config(success=PLAIN), tracker_reset("forward")
    )
    first = await post_form(proxy, "/account/lost_password", {"mail": "user4@example.com"})
    await settle(proxy)
    [message] = await wait_for_mail(outbox)
    assert message["To"] == "user4@example.com"
    second = await post_form(proxy, "/account/lost_password", {"mail": "nobody@example.com"})
    await settle(proxy)
    assert first == second
    assert [s.body for s in tracker.posts("/account/lost_password")] == [
        b"mail=nobody%40example.com"
    ]
    assert tracker.mails == []  # the tracker has no such user either


async def test_unknown_drop_sends_no_mail_anywhere(
    start_tracker: StartTracker, tracker: Tracker, outbox: Path
) -> None:
    """reset.unknown = "drop" (the default): a reset the look-up cannot serve goes nowhere."""
    proxy = await start_tracker(
        accounts(outbox), tracker_config(success=PLAIN), tracker_reset("drop"), wrong_api_key
    )
    await post_form(proxy, "/account/lost_password", {"mail": "user4@example.com"})
    await settle(proxy)
    assert tracker.posts("/account/lost_password") == [] and tracker.mails == []
    assert read_mail(outbox) == []
