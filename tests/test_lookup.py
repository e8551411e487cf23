"""The legacy look-up: 200 is a profile, 404 is "not found", anything else is an error."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.commands.lookup import lookup_once
from proxy.config import LookupConfig, ProfileMap, Secret
from proxy.errors import LookupFailed
from proxy.flows.identity import refresh_profile
from proxy.lookup import Lookup
from tests.accounts import LOOKUP_AUTH, accounts, settle
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import StartProxy, make_config
from tests.fixtures.tracker import API_KEY as TRACKER_API_KEY
from tests.fixtures.tracker import Tracker, tracker_config


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def lookup_for(server: TestServer, client: aiohttp.ClientSession, **overrides: Any) -> Lookup:
    base = str(server.make_url("/internal/users"))
    config = LookupConfig(
        by_email=f"{base}?email={{email}}",
        by_username=f"{base}?username={{username}}",
        headers=(("Authorization", Secret(LOOKUP_AUTH)),),
        timeout=1.0,
    )
    values = {slot: getattr(config, slot) for slot in LookupConfig.__slots__}
    return Lookup(LookupConfig(**{**values, **overrides}), client, ProfileMap())


async def test_found_and_not_found(
    legacy_server: TestServer, legacy: FakeLegacy, client: aiohttp.ClientSession
) -> None:
    """A 200 profile is found (by email or username, any case) and a 404 is None."""
    legacy.lookup_auth = LOOKUP_AUTH
    lookup = lookup_for(legacy_server, client)
    found = await lookup.by_email("alice@example.com")
    assert found is not None and found.fields.legacy_id == "1"
    assert found.profile["username"] == "Alice"
    by_name = await lookup.by_username("ALICE")
    assert by_name is not None and by_name.profile == found.profile
    assert await lookup.by_email("nobody@example.com") is None
    assert await lookup.by_username("nobody") is None


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("lookup_status", 500, "answered 500"),
        ("lookup_status", 403, "answered 403"),
        ("lookup_auth", "Bearer other", "answered 401"),
        ("lookup_delay", 1.5, "no answer within"),
        ("profile_override", {"id": 9, "email": "mallory@example.com"}, "another email"),
        ("profile_override", [], "no profile object"),
    ],
)
async def test_every_other_answer_is_an_error(
    legacy_server: TestServer,
    legacy: FakeLegacy,
    client: aiohttp.ClientSession,
    knob: str,
    value: Any,
    message: str,
) -> None:
    """An error status, a refused secret, a timeout, another user's profile or a body that is
    no profile raise LookupFailed; none is ever taken for "not found"."""
    setattr(legacy, knob, value)
    with pytest.raises(LookupFailed, match=message):
        await lookup_for(legacy_server, client).by_email("bob@example.com")


async def test_an_unreachable_legacy_app_is_an_error(client: aiohttp.ClientSession) -> None:
    """A refused connection raises LookupFailed."""
    config = LookupConfig(by_email="http://127.0.0.1:1/users?email={email}", timeout=1.0)
    with pytest.raises(LookupFailed, match="unavailable"):
        await Lookup(config, client, ProfileMap()).by_email("bob@example.com")


async def test_the_email_is_quoted_into_the_url(
    legacy_server: TestServer, legacy: FakeLegacy, client: aiohttp.ClientSession
) -> None:
    """An email with & and + cannot add query parameters: it is percent-encoded."""
    await lookup_for(legacy_server, client).by_email("a+b&username=bob@example.com")
    assert legacy.lookups()[-1].path == "/internal/users?email=a%2Bb%26username%3Dbob@example.com"


async def test_the_lookup_command(
    legacy_server: TestServer, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """`authshim lookup` prints the profile and exits 0, 1 for not found, 3 on an error."""
    legacy.lookup_auth = LOOKUP_AUTH
    upstream = str(legacy_server.make_url("")).rstrip("/")
    config = make_config(upstream, f"sqlite:///{tmp_path / 'a.db'}", accounts(tmp_path / "o"))
    out = io.StringIO()
    assert await lookup_once(config, "bob@example.com", by_username=False, out=out) == 0
    assert '"username": "bob"' in out.getvalue() and "import rules: pass" in out.getvalue()
    assert await lookup_once(config, "carol", by_username=True, out=io.StringIO()) == 0
    assert await lookup_once(config, "no@example.com", by_username=False, out=out) == 1
    legacy.lookup_status = 500
    assert await lookup_once(config, "bob@example.com", by_username=False, out=out) == 3


def test_the_lookup_command_needs_a_lookup_section(tmp_path: Path) -> None:
    """Without [lookup] the command says so and exits 2."""
    from proxy.cli import main

    config = tmp_path / "authshim.toml"
    config.write_text(
        '[upstream]\nurl = "http://127.0.0.1:1"\n'
        '[session]\nsecret = "0123456789abcdef0123456789abcdef-x"\n'
    )
    assert main(["lookup", "bob@example.com", "--config", str(config)]) == 2


async def test_refresh_on_login_copies_legacy_edits(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """With refresh_on_login, a local login refreshes the stored profile from the legacy app in
    the background, email included."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", refresh=True))
    await proxy.form_login("bob", "builder-22")
    legacy.users["bob"].update(email="Bobby@Example.com", first_name="Bob")
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "builder-22")).headers["Location"] == "/private/"
    await settle(proxy)
    user = await proxy.svc.store.find_user("bob")
    assert user is not None and user.email == "bobby@example.com"
    assert user.profile["first_name"] == "Bob"
    assert proxy.svc.counters.totals["profile.refresh.updated"] == 1


async def test_refresh_keeps_the_profile_when_the_lookup_fails(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """A failed look-up leaves the stored profile as it was and is counted."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", refresh=True))
    await proxy.form_login("bob", "builder-22")
    user = await proxy.svc.store.find_user("bob")
    assert user is not None
    legacy.lookup_status = 500
    await refresh_profile(proxy.svc, user.id)
    assert await proxy.svc.store.find_user("bob") == user
    assert proxy.svc.counters.totals["profile.refresh.lookup_error"] == 1


def tracker_lookup(server: TestServer, client: aiohttp.ClientSession, **overrides: Any) -> Lookup:
    base = str(server.make_url("/users.json"))
    config = LookupConfig(
        by_email=f"{base}?name={{email}}",
        by_username=f"{base}?name={{username}}",
        headers=(("X-Tracker-API-Key", Secret(TRACKER_API_KEY)),),
        timeout=1.0,
        list="/total_count" if overrides else "/users",
    )
    return Lookup(config, client, ProfileMap(email="/mail", username="/login"))


async def test_a_list_is_searched_for_the_exact_user(
    tracker_server: TestServer, tracker: Tracker, client: aiohttp.ClientSession
) -> None:
    """name=user4 lists auser4 first: the element whose login (or mail) equals the identifier
    is taken, user4, never the first one."""
    lookup = tracker_lookup(tracker_server, client)
    found, received = await lookup.find("username", "USER4")
    assert found is not None and found.profile["login"] == "user4" and found.fields.legacy_id == "2"
    assert received.elements == 2 and received.matched == 1
    by_mail = await lookup.by_email("user4@example.com")
    assert by_mail is not None and by_mail.profile["id"] == 2
    assert await lookup.by_username("ser4") is None  # two elements, neither equal
    assert await lookup.by_username("nobody") is None  # an empty list


async def test_a_list_with_two_matches_is_an_error(
    tracker_server: TestServer, tracker: Tracker, client: aiohttp.ClientSession
) -> None:
    """Two elements that both equal the identifier (mail case aside) raise LookupFailed."""
    tracker.add_user("user4b", "USER4@example.com", "x")
    with pytest.raises(LookupFailed, match=r"2 of the list's 3 elements have this email"):
        await tracker_lookup(tracker_server, client).by_email("user4@example.com")


async def test_a_list_pointer_that_is_no_list_is_an_error(
    tracker_server: TestServer, tracker: Tracker, client: aiohttp.ClientSession
) -> None:
    """A list pointer that names no list raises LookupFailed, never "not found"."""
    with pytest.raises(LookupFailed, match="no list at '/total_count'"):
        await tracker_lookup(tracker_server, client, list_="x").by_email("user4@example.com")


async def test_the_lookup_command_explains_a_list(
    tracker_server: TestServer, tracker: Tracker, tmp_path: Path
) -> None:
    """`authshim lookup` says what it received: the list's length and the element that
    matched; a 200 with an empty list is "not found (the list had 0 elements)"."""
    upstream = str(tracker_server.make_url("")).rstrip("/")
    config = make_config(
        upstream, f"sqlite:///{tmp_path / 'a.db'}", tracker_config(success={"status": [302]})
    )
    out = io.StringIO()
    assert await lookup_once(config, "user4", by_username=True, out=out) == 0
    said = out.getvalue()
    assert "received: status 200, a list of 2 elements, element 1 has this username" in said
    assert '"login": "user4"' in said
    out = io.StringIO()
    assert await lookup_once(config, "nobody", by_username=True, out=out) == 1
    assert "not found (the list had 0 elements)" in out.getvalue()
    assert "404" not in out.getvalue()
    out = io.StringIO()
    assert await lookup_once(config, "ser4", by_username=True, out=out) == 1
    assert "none of the list's 2 elements has this username" in out.getvalue()
