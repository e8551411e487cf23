"""Names as the legacy app spells them ([migration] username_case) and where the user was
going (a ``{next}`` redirect template), through a real proxy in front of a fake legacy app
that folds only the first letter of a username, as MediaWiki does (issue 15)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.answers import next_target, safe_next_value
from proxy.app import create_app
from proxy.errors import ConfigError
from proxy.modes import write_mode
from store.errors import StoreUnavailable
from tests.fixtures.legacy import FakeLegacy, first_letter
from tests.fixtures.proxy import Proxy, StartProxy, make_config

CASEY, SHOUT = "casey-own-password", "shout-own-password"


@pytest.fixture
def legacy() -> FakeLegacy:
    """A MediaWiki-like site: casey is Casey, CASEY is another user."""
    site = FakeLegacy(fold=first_letter)
    site.add_user(1, "Casey", "casey@example.com", CASEY)
    site.add_user(2, "CASEY", "shout@example.com", SHOUT)
    return site


def first_letter_config(raw: dict[str, Any]) -> None:
    raw["migration"]["username_case"] = "first_letter"


def title_answer(raw: dict[str, Any]) -> None:
    first_letter_config(raw)
    raw["login"][0]["answer"] = {"redirect": "/index.php?title={next}", "next_param": "returnto"}


async def who(proxy: Proxy) -> str | None:
    """The user name the legacy app is told on a passthrough request."""
    async with proxy.client.get(proxy.url("/index.php?title=Main_Page")) as response:
        headers = (await response.json())["headers"]
    return headers.get("X-Forwarded-User")


async def login(proxy: Proxy, username: str, password: str) -> str:
    """Log in afresh; return where the answer sends the browser ("" for a page)."""
    proxy.client.cookie_jar.clear()
    response = await proxy.form_login(username, password)
    return response.headers.get("Location", "") if response.status == 302 else ""


LEGACY_OK, LOCAL_OK, LOCAL_FAILED = "/", "/private/", "/accounts/login/?error=1"


async def test_two_users_who_differ_past_the_first_letter_both_migrate(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """Once Casey migrated, CASEY's own password is forwarded and captured, not judged by
    Casey's hash; each then logs in locally, with the legacy app's spelling in the header."""
    proxy = await start_proxy(first_letter_config)
    assert await login(proxy, "casey", CASEY) == LEGACY_OK  # forwarded: Casey migrates
    assert len(legacy.logins()) == 1
    assert await who(proxy) == "Casey"
    assert await login(proxy, "CASEY", SHOUT) == LEGACY_OK, "judged by Casey's hash"
    assert len(legacy.logins()) == 2
    assert await who(proxy) == "CASEY"
    store = proxy.svc.store
    casey, shout = await store.find_user("Casey"), await store.find_user("CASEY")
    assert casey is not None and shout is not None and casey.id != shout.id
    assert (casey.username, shout.username) == ("Casey", "CASEY")
    # Local answers now, each by its own hash; "cASEY" is CASEY to the legacy app too.
    for typed, password, name in (("Casey", CASEY, "Casey"), ("cASEY", SHOUT, "CASEY")):
        assert await login(proxy, typed, password) == LOCAL_OK
        assert await who(proxy) == name
    assert await login(proxy, "CASEY", CASEY) == LOCAL_FAILED  # Casey's password is not CASEY's
    assert len(legacy.logins()) == 2


async def test_a_fold_the_legacy_app_does_not_make_is_forwarded(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """With Casey migrated, "CAsey" (nobody to the legacy app) goes to the legacy app like any
    unmigrated name, and nothing is captured when it refuses."""
    proxy = await start_proxy(first_letter_config)
    assert await login(proxy, "Casey", CASEY) == LEGACY_OK
    assert await login(proxy, "CAsey", CASEY) == ""  # the legacy app's own refusal page
    assert len(legacy.logins()) == 2
    assert await proxy.svc.store.count_users() == 1


async def test_cutover_answers_each_spelling_by_its_own_user(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """In cut-over, Casey and CASEY each log in with their own password and nobody else's."""
    proxy = await start_proxy(first_letter_config)
    assert await login(proxy, "Casey", CASEY) == LEGACY_OK
    assert await login(proxy, "CASEY", SHOUT) == LEGACY_OK
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    assert await login(proxy, "casey", CASEY) == LOCAL_OK and await who(proxy) == "Casey"
    assert await login(proxy, "CASEY", SHOUT) == LOCAL_OK and await who(proxy) == "CASEY"
    assert await login(proxy, "CASEY", CASEY) == LOCAL_FAILED
    assert await login(proxy, "CAsey", CASEY) == LOCAL_FAILED
    assert len(legacy.logins()) == 2


async def test_lower_store_refuses_another_rule_once_users_exist(
    legacy_server: TestServer, sqlite_url: str, start_proxy: StartProxy
) -> None:
    """A store whose users were keyed lower-case will not start under first_letter."""
    proxy = await start_proxy()
    assert await login(proxy, "Casey", CASEY) == LEGACY_OK
    upstream = str(legacy_server.make_url("")).rstrip("/")
    config = make_config(upstream, sqlite_url, first_letter_config)
    with pytest.raises(StoreUnavailable, match="username_case"):
        server = TestServer(create_app(config), host="127.0.0.1")
        try:
            await server.start_server()
        finally:
            await server.close()


async def test_next_template_lands_on_the_page_title(start_proxy: StartProxy) -> None:
    """A local login lands on the wiki page it came from, its title percent-encoded."""
    proxy = await start_proxy(title_answer)
    await login(proxy, "Casey", CASEY)  # captured: the legacy app's own answer
    proxy.client.cookie_jar.clear()
    response = await proxy.form_login("Casey", CASEY, returnto="Help:Contents/Ünïcode page")
    assert response.status == 302
    expected = "/index.php?title=Help%3AContents/%C3%9Cn%C3%AFcode%20page"
    assert response.headers["Location"] == expected


@pytest.mark.parametrize(
    "hostile",
    [
        "//evil.example/",
        "https://evil.example/",
        "javascript:alert(1)",
        " JavaScript:alert(1)",
        "data:text/html,x",
        "a\\b",
        "/\\evil.example",
        "x\r\nSet-Cookie: a=b",
        "x\x00y",
        "\u202eelpmaxe.live",
        "Page\u2028two",
    ],
)
async def test_hostile_next_values_fall_back_to_the_bare_template(
    start_proxy: StartProxy, hostile: str
) -> None:
    """A value that could leave the site or hide what it says never reaches the Location."""
    proxy = await start_proxy(title_answer)
    await login(proxy, "Casey", CASEY)
    proxy.client.cookie_jar.clear()
    response = await proxy.form_login("Casey", CASEY, returnto=hostile)
    assert response.status == 302
    assert response.headers["Location"] == "/index.php?title="


def test_next_cannot_add_a_parameter_or_a_fragment() -> None:
    """Characters that would end the value inside the template are percent-encoded."""
    target = next_target("/index.php?title={next}", "A&action=delete#top?x=1")
    assert target == "/index.php?title=A%26action%3Ddelete%23top%3Fx%3D1"


def test_next_cannot_make_a_path_template_protocol_relative() -> None:
    """"/{next}" filled with "/evil.example" would be "//evil.example": the bare template."""
    assert next_target("/{next}", "/evil.example") == "/"
    assert next_target("/{next}", "wiki/Page") == "/wiki/Page"
    assert safe_next_value(None) is None and safe_next_value("") is None


def test_next_template_without_next_param_is_a_config_error() -> None:
    """A {next} template names the parameter it comes from, or the config is refused."""

    def change(raw: dict[str, Any]) -> None:
        raw["login"][0]["answer"] = {"redirect": "/index.php?title={next}"}

    with pytest.raises(ConfigError, match="next_param"):
        make_config("http://127.0.0.1:1", "sqlite:///:memory:", change)


def test_username_case_is_checked() -> None:
    """An unknown username_case is a config error naming the key."""

    def change(raw: dict[str, Any]) -> None:
        raw["migration"]["username_case"] = "upper"

    with pytest.raises(ConfigError, match="username_case"):
        make_config("http://127.0.0.1:1", "sqlite:///:memory:", change)

