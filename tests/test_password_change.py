"""Password change: verified locally for migrated users, forwarded for the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.modes import write_mode
from tests.accounts import accounts, post_form
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy

PATH = "/accounts/password_change/"
DONE = "/accounts/password_change/done/"
FAILED = "/accounts/password_change/?error=1"


@pytest.fixture
async def proxy(start_proxy: StartProxy, tmp_path: Path) -> Proxy:
    """authshim with a password-change route (and the other account sections)."""
    result: Proxy = await start_proxy(accounts(tmp_path / "outbox"))
    return result


def change(old: str, new: str, again: str | None = None) -> dict[str, str]:
    return {"old_password": old, "new_password1": new, "new_password2": again or new}


async def session_ok(proxy: Proxy, cookie: str) -> bool:
    async with aiohttp.ClientSession() as client:
        async with client.get(
            proxy.url("/.authshim/session"), headers={"Cookie": f"authshim={cookie}"}
        ) as response:
            return response.status == 200


async def test_a_change_keeps_this_session_and_ends_the_others(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """The old password is checked, the new one works, the session that changed it goes on
    and every other session of the user ends."""
    await proxy.form_login("bob", "builder-22")  # captured
    proxy.client.cookie_jar.clear()
    await proxy.form_login("bob", "builder-22")  # local: a second session elsewhere
    other = proxy.session_cookie()
    proxy.client.cookie_jar.clear()
    await proxy.form_login("bob", "builder-22")
    assert other is not None and await session_ok(proxy, other)

    assert (await post_form(proxy, PATH, change("builder-22", "rebuilt-333")))[:2] == (302, DONE)
    mine = proxy.session_cookie()
    assert mine is not None and await session_ok(proxy, mine)
    assert not await session_ok(proxy, other)
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "rebuilt-333")).headers["Location"] == "/private/"
    assert legacy.posts(PATH) == [] and len(legacy.logins()) == 1


async def test_a_wrong_old_password_changes_nothing(proxy: Proxy) -> None:
    """A wrong old password gets the failure answer; the stored hash is unchanged."""
    await proxy.form_login("bob", "builder-22")
    before = await proxy.svc.store.find_user("bob")
    answer = await post_form(proxy, PATH, change("not-my-password", "rebuilt-333"))
    assert answer[:2] == (302, FAILED)
    after = await proxy.svc.store.find_user("bob")
    assert before is not None and after is not None
    assert after.password_hash == before.password_hash
    assert after.session_epoch == before.session_epoch


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (change("builder-22", "short"), "at least 8 characters"),
        (change("builder-22", "x" * 65), "at most 64 characters"),
        (change("builder-22", "rebuilt-333", "rebuilt-334"), "differ"),
    ],
)
async def test_a_bad_new_password_is_a_clear_400(
    proxy: Proxy, fields: dict[str, str], message: str
) -> None:
    """The policy and the confirmation field are checked, with a message saying what is wrong."""
    await proxy.form_login("bob", "builder-22")
    status, _, body = await post_form(proxy, PATH, fields)
    assert status == 400 and message in body


async def test_an_unmigrated_users_change_is_forwarded(proxy: Proxy, legacy: FakeLegacy) -> None:
    """Without an authshim session the request goes to the legacy app unchanged."""
    status, _, _ = await post_form(proxy, PATH, change("wonderland-1", "wonderland-2"))
    assert status == 200  # the fake legacy app's echo
    [seen] = legacy.posts(PATH)
    assert b"old_password=wonderland-1" in seen.body


async def test_a_change_in_cutover_without_the_legacy_app(
    start_proxy: StartProxy, legacy_server: Any, tmp_path: Path
) -> None:
    """In cut-over with the legacy app down a migrated user changes the password; a request
    without a session gets the failure answer."""
    proxy = await start_proxy(accounts(tmp_path / "outbox"))
    await proxy.form_login("bob", "builder-22")
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    await legacy_server.close()
    assert (await post_form(proxy, PATH, change("builder-22", "rebuilt-333")))[:2] == (302, DONE)
    proxy.client.cookie_jar.clear()
    assert (await post_form(proxy, PATH, change("builder-22", "rebuilt-444")))[:2] == (
        302,
        FAILED,
    )


async def test_the_old_password_check_counts_against_the_login_limit(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """Guessing the old password of a stolen session is limited like a login: after ten wrong
    guesses even the right one is answered 429, and the password is unchanged."""
    await proxy.form_login("bob", "builder-22")
    for _ in range(10):
        assert (await post_form(proxy, PATH, change("guess", "rebuilt-333")))[:2] == (302, FAILED)
    assert (await post_form(proxy, PATH, change("builder-22", "rebuilt-333")))[0] == 429
    await proxy.settled()
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "builder-22")).status == 429  # one count for both
