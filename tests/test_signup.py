"""Sign-up: local (checked against the store and the legacy look-up) and upstream (captured)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.errors import ConfigError
from proxy.modes import write_mode
from tests.accounts import accounts, post_form
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy, make_config

CONFLICT = "/accounts/signup/?error=exists"


@pytest.fixture
async def proxy(start_proxy: StartProxy, tmp_path: Path) -> Proxy:
    """authshim with a local sign-up and the legacy look-up."""
    result: Proxy = await start_proxy(accounts(tmp_path / "outbox"))
    return result


def form(email: str, username: str, password: str = "dave-pass", **extra: str) -> dict[str, str]:
    return {"email": email, "username": username, "password": password, **extra}


Change = Callable[[dict[str, Any]], None]


def changes(*steps: Change) -> Change:
    """One config change made of several, applied in order."""

    def change(raw: dict[str, Any]) -> None:
        for step in steps:
            step(raw)

    return change


def legacy_check(value: str) -> Change:
    def change(raw: dict[str, Any]) -> None:
        raw["signup"]["legacy_check"] = value

    return change


def local_prefix(value: Any) -> Change:
    def change(raw: dict[str, Any]) -> None:
        raw["identity"]["local_prefix"] = value

    return change


def drop_lookup(raw: dict[str, Any]) -> None:
    del raw["lookup"]


def start_in_cutover(raw: dict[str, Any]) -> None:
    raw.setdefault("migration", {})["mode"] = "cutover"


async def set_mode(proxy: Proxy, mode: str) -> None:
    await write_mode(proxy.svc.store, mode)
    await proxy.svc.modes.refresh()


async def upstream_headers(proxy: Proxy) -> dict[str, str]:
    """The headers the legacy app got on a pass-through request of the proxy's client."""
    async with proxy.client.get(proxy.url("/whoami")) as answer:
        headers: dict[str, str] = (await answer.json())["headers"]
        return headers


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
    assert lookups == [  # each value against both look-ups
        "/internal/users?email=dave",
        "/internal/users?email=dave@example.com",
        "/internal/users?username=dave",
        "/internal/users?username=dave@example.com",
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
    """In cut-over with legacy_check = migrate (legacy app down) a sign-up is local, even with
    handler = upstream, and a stored user still conflicts."""
    proxy = await start_proxy(
        changes(accounts(tmp_path / "outbox", signup_handler="upstream"), legacy_check("migrate"))
    )
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    await legacy_server.close()
    answer = await post_form(proxy, "/accounts/signup/", form("frank@example.com", "frank"))
    assert answer[:2] == (302, "/private/")
    proxy.client.cookie_jar.clear()
    answer = await post_form(proxy, "/accounts/signup/", form("FRANK@example.com", "frank2"))
    assert answer[:2] == (302, CONFLICT)
    assert await proxy.svc.store.count_users() == 1


# -- sign-up cannot become somebody else (issue 13, item 5) -----------------------------------

MODES = pytest.mark.parametrize("mode", ["migrate", "cutover"])


@MODES
async def test_an_unmigrated_legacy_username_is_refused_in_both_modes(
    proxy: Proxy, legacy: FakeLegacy, mode: str
) -> None:
    """Signing up as an unmigrated legacy user's username gets the conflict answer in both
    modes, so no session ever sends that name to the legacy app (which trusts the header)."""
    legacy.add_user(42, "user42", "user42@example.com", "legacy-pass-42")
    await set_mode(proxy, mode)
    answer = await post_form(proxy, "/accounts/signup/", form("mallory@example.com", "User42"))
    assert answer[:2] == (302, CONFLICT) and proxy.session_cookie() is None
    assert await proxy.svc.store.count_users() == 0
    assert "X-Forwarded-User" not in await upstream_headers(proxy)


@MODES
async def test_a_username_that_is_an_email_is_refused_in_both_modes(
    proxy: Proxy, legacy: FakeLegacy, mode: str
) -> None:
    """A username equal to an unmigrated user's email is refused (400) in both modes; that
    user's own login by email then still reaches the legacy app and migrates them."""
    await set_mode(proxy, mode)
    status, _, body = await post_form(
        proxy, "/accounts/signup/", form("mallory@example.com", "BOB@example.com")
    )
    assert status == 400 and "username is not valid: must not contain @" in body
    assert await proxy.svc.store.count_users() == 0
    if mode == "migrate":
        assert (await proxy.form_login("bob@example.com", "builder-22")).status == 302
        bob = await proxy.svc.store.find_user("bob@example.com")
        assert bob is not None and bob.source == "login" and bob.username == "bob"


@pytest.mark.parametrize("username", ["dave@", "@dave", "dave\uff20example"])
async def test_a_username_with_an_at_sign_is_refused(proxy: Proxy, username: str) -> None:
    """Any @ in a username, also one NFKC folds into @ (full-width), is a 400; nothing stored."""
    status, _, body = await post_form(
        proxy, "/accounts/signup/", form("dave@example.com", username)
    )
    assert status == 400 and "must not contain @" in body
    assert await proxy.svc.store.count_users() == 0


@MODES
async def test_an_email_that_is_a_legacy_username_conflicts(
    proxy: Proxy, legacy: FakeLegacy, mode: str
) -> None:
    """The new email is checked against legacy usernames too (a legacy username may hold @)."""
    legacy.add_user(43, "eve@example.com", "eve@home.example", "legacy-pass-43")
    await set_mode(proxy, mode)
    answer = await post_form(proxy, "/accounts/signup/", form("EVE@example.com", "newcomer"))
    assert answer[:2] == (302, CONFLICT)
    assert await proxy.svc.store.count_users() == 0


async def test_a_failed_lookup_refuses_a_cutover_sign_up(proxy: Proxy, legacy: FakeLegacy) -> None:
    """In cut-over (legacy_check = always, the default) a failed look-up is a 503; nobody."""
    await set_mode(proxy, "cutover")
    legacy.lookup_status = 502
    status, _, body = await post_form(proxy, "/accounts/signup/", form("dave@example.com", "dave"))
    assert status == 503 and "legacy" in body
    assert await proxy.svc.store.count_users() == 0


@pytest.mark.parametrize("handler", ["local", "upstream"])
def test_legacy_check_always_without_lookup_is_a_config_error(tmp_path: Path, handler: str) -> None:
    """legacy_check = always (the default) without [lookup] cannot check a cut-over sign-up:
    the config is refused, naming the key, whatever the mode the config starts in."""
    with pytest.raises(ConfigError, match=r"signup\.legacy_check: 'always' .* needs \[lookup\]"):
        make_config(
            "http://127.0.0.1:9", "sqlite:///x.db",
            changes(accounts(tmp_path, signup_handler=handler), drop_lookup, start_in_cutover),
        )  # fmt: skip


async def test_a_sign_up_without_lookup_is_refused_in_migrate(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """Started in cut-over without [lookup] (legacy_check = migrate), a local sign-up after a
    rollback to migrate cannot be checked: 503, nobody created."""
    proxy = await start_proxy(
        changes(
            accounts(tmp_path / "outbox"), drop_lookup, start_in_cutover, legacy_check("migrate")
        )
    )
    await set_mode(proxy, "migrate")
    status, _, body = await post_form(proxy, "/accounts/signup/", form("dave@example.com", "dave"))
    assert status == 503 and "legacy" in body and await proxy.svc.store.count_users() == 0


async def test_legacy_check_migrate_skips_the_lookup_in_cutover(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """With legacy_check = migrate the operator says the legacy app is out of the way after
    cut-over: the sign-up is checked against the store only, as before."""
    legacy.add_user(42, "user42", "user42@example.com", "legacy-pass-42")
    proxy = await start_proxy(changes(accounts(tmp_path / "outbox"), legacy_check("migrate")))
    await set_mode(proxy, "cutover")
    answer = await post_form(proxy, "/accounts/signup/", form("new42@example.com", "user42"))
    assert answer[:2] == (302, "/private/") and legacy.lookups() == []


async def test_identity_headers_of_a_signed_up_user_carry_the_prefix(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """With identity.local_prefix, a signed-up user's identity headers carry it; a captured
    legacy user's do not."""
    proxy = await start_proxy(changes(accounts(tmp_path / "outbox"), local_prefix("authshim:")))
    answer = await post_form(proxy, "/accounts/signup/", form("Dave@Example.com", "Dave"))
    assert answer[:2] == (302, "/private/")
    headers = await upstream_headers(proxy)
    assert headers["X-Forwarded-User"] == "authshim:Dave"
    assert headers["X-Forwarded-Email"] == "authshim:Dave@Example.com"
    proxy.client.cookie_jar.clear()
    assert (await proxy.form_login("bob", "builder-22")).status == 302
    headers = await upstream_headers(proxy)
    assert headers["X-Forwarded-User"] == "bob"
    assert headers["X-Forwarded-Email"] == "bob@example.com"


async def test_an_upstream_sign_up_is_a_legacy_user_without_the_prefix(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """An upstream sign-up exists in the legacy app (it has a legacy id): no prefix."""
    proxy = await start_proxy(
        changes(accounts(tmp_path / "outbox", signup_handler="upstream"), local_prefix("as:"))
    )
    answer = await post_form(proxy, "/accounts/signup/", form("erin@example.com", "Erin"))
    assert answer[:2] == (302, "/welcome/")
    assert (await upstream_headers(proxy))["X-Forwarded-User"] == "Erin"


@pytest.mark.parametrize("value", ["", " x", "a\r\nX-Admin: 1", "é:", 7, "x" * 65])
def test_a_bad_local_prefix_is_a_config_error(value: Any) -> None:
    """identity.local_prefix is an option beside the headers; it must be printable ASCII (it
    goes into header values), else an error naming the key."""
    config = make_config("http://127.0.0.1:9", "sqlite:///x.db", local_prefix("authshim:"))
    assert config.identity_prefix == "authshim:" and len(config.identity) == 2
    with pytest.raises(ConfigError, match=r"identity\.local_prefix"):
        make_config("http://127.0.0.1:9", "sqlite:///x.db", local_prefix(value))


def test_legacy_check_defaults_to_always_and_is_checked(tmp_path: Path) -> None:
    """signup.legacy_check defaults to always; another value is an error naming the key."""
    config = make_config("http://127.0.0.1:9", "sqlite:///x.db", accounts(tmp_path))
    assert config.signup is not None and config.signup.legacy_check == "always"
    with pytest.raises(ConfigError, match=r"signup\.legacy_check"):
        make_config(
            "http://127.0.0.1:9", "sqlite:///x.db",
            changes(accounts(tmp_path), legacy_check("cutover")),
        )  # fmt: skip


async def test_an_upstream_sign_up_with_an_at_in_the_username_is_not_forwarded(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """The username rule holds for handler = upstream too: 400, the legacy app never asked."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", signup_handler="upstream"))
    status, _, body = await post_form(
        proxy, "/accounts/signup/", form("erin@example.com", "erin@elsewhere.example")
    )
    assert status == 400 and "must not contain @" in body
    assert legacy.posts("/accounts/signup/") == [] and await proxy.svc.store.count_users() == 0


async def test_an_upstream_sign_up_as_a_stored_local_user_is_not_forwarded(
    start_proxy: StartProxy, legacy: FakeLegacy, tmp_path: Path
) -> None:
    """A user signed up locally in cut-over is unknown to the legacy app; after a rollback an
    upstream sign-up with that username gets the conflict answer and is never forwarded."""
    proxy = await start_proxy(accounts(tmp_path / "outbox", signup_handler="upstream"))
    await set_mode(proxy, "cutover")
    answer = await post_form(proxy, "/accounts/signup/", form("frank@example.com", "frank"))
    assert answer[:2] == (302, "/private/")
    proxy.client.cookie_jar.clear()
    await set_mode(proxy, "migrate")
    answer = await post_form(proxy, "/accounts/signup/", form("other@example.com", "Frank"))
    assert answer[:2] == (302, CONFLICT)
    assert legacy.posts("/accounts/signup/") == [] and await proxy.svc.store.count_users() == 1
