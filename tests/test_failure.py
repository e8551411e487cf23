"""A failed login's answer from the legacy app itself (``failure.from_legacy``)."""

from __future__ import annotations

import json
from typing import Any

from proxy.modes import write_mode
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy
from tests.test_timing import timed


def from_legacy(raw: dict[str, Any]) -> None:
    for route in raw["login"]:
        route["failure"]["from_legacy"] = True


async def test_a_migrated_users_wrong_password_gets_the_legacy_apps_own_refusal(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """Migrated, unmigrated and unknown users get the same status and body (the legacy app's);
    the legacy app saw a random password, never the one typed, and logged nobody in."""
    proxy: Proxy = await start_proxy(from_legacy)
    assert (await timed(proxy, "bob@example.com", "builder-22"))[1] == 200  # bob migrates
    answers = {
        who: (await timed(proxy, who, "wrong-password"))[1:]
        for who in ("bob@example.com", "carol@example.com", "nobody@example.com")
    }
    assert set(answers.values()) == {(401, b'{"ok": false}')}
    sent = json.loads(legacy.logins()[-3].body)  # bob's: the legacy app was asked for its page
    assert sent["email"] == "bob@example.com" and sent["password"] != "wrong-password"
    assert len(sent["password"]) >= 32


async def test_in_cutover_or_with_the_legacy_app_down_the_configured_failure_answers(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """The legacy app is never asked in cut-over; the configured answer is the fallback."""
    proxy: Proxy = await start_proxy(from_legacy)
    assert (await timed(proxy, "bob@example.com", "builder-22"))[1] == 200
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    before = len(legacy.logins())
    _, status, body = await timed(proxy, "bob@example.com", "wrong-password")
    assert (status, json.loads(body)) == (401, {"error": "invalid credentials"})
    assert len(legacy.logins()) == before


async def test_a_legacy_acceptance_of_the_random_password_is_never_relayed(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """Were the legacy app to accept any password, its session would not reach the client."""
    proxy: Proxy = await start_proxy(from_legacy)
    assert (await timed(proxy, "bob@example.com", "builder-22"))[1] == 200
    legacy.passwords["bob"] = "anything"
    original = legacy.check
    legacy.check = lambda identifier, password: original(identifier, "anything")  # type: ignore[method-assign]
    _, status, body = await timed(proxy, "bob@example.com", "wrong-password")
    assert (status, json.loads(body)) == (401, {"error": "invalid credentials"})
    assert proxy.svc.counters.totals["login.failure_page_accepted"] == 1
