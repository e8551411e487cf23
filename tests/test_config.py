"""The config: the example loads, and every problem is reported with its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.config import ALL_KEYS, load_config, parse_config, parse_duration
from proxy.errors import ConfigError
from tests.fixtures.proxy import EXAMPLE, SECRET

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_config_loads_as_written() -> None:
    """examples/authshim.toml (the core issue's example) loads with the secret in the env."""
    env = {"AUTHSHIM_SECRET": SECRET, "LEGACY_LOOKUP_AUTH": "Bearer lookup-secret"}
    config = load_config(ROOT / "examples" / "authshim.toml", env=env)
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert [route.path for route in config.logins] == ["/accounts/login/", "/api/login"]
    assert (
        config.logins[0].success.status == (302,) and config.logins[0].success.cookie == "sessionid"
    )
    assert config.logins[1].answer.json == {"ok": True, "user": "{profile}"}
    assert config.session.max_age == 14 * 86400 and config.session.secure is False
    assert config.identity == (("X-Forwarded-User", "username"), ("X-Forwarded-Email", "email"))
    # Reset, sign-up and password change (reset/sign-up issue).
    assert config.lookup is not None and config.lookup.timeout == 5.0
    assert [(n, s.value) for n, s in config.lookup.headers] == [
        ("Authorization", "Bearer lookup-secret")
    ]
    assert config.reset is not None and config.reset.expires == 1800.0
    assert config.mail is not None and config.mail.transport == "file"
    assert config.signup is not None and config.signup.fields == ("first_name", "last_name")
    assert config.password_change is not None and config.password_change.new == "new_password1"
    assert (config.policy.min_length, config.policy.max_length) == (8, 1024)


def test_every_problem_is_reported_at_once_naming_its_key() -> None:
    """Several mistakes give one error listing each, by key."""
    raw = {
        "server": {"listen": "nowhere"},
        "upstream": {"url": "ftp://x"},
        "migration": {"mode": "sideways", "validat": True},
        "login": [
            {
                "path": "accounts",
                "format": "xml",
                "success": {},
                "answer": {"redirect": "/a", "json": {}},
            }
        ],
        "session": {"secret": "short", "max_age": "forever"},
        "identity": {"X-User": "shoe_size"},
        "passwords": {"time_cost": 0},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    problems = "\n".join(caught.value.problems)
    for key in [
        "server.listen",
        "upstream.url",
        "migration.mode",
        "migration.validat: unknown key",
        "login[0].path",
        "login[0].format",
        "login[0].identifier",
        "login[0].password",
        "login[0].success: needs at least one rule",
        "login[0].profile: is required",
        "login[0].answer: takes redirect or json",
        "login[0].failure: is required",
        "session.secret: must be at least 32",
        "session.max_age",
        "identity.X-User",
        "passwords.time_cost",
    ]:
        assert key in problems, key


def test_a_missing_environment_secret_is_named() -> None:
    """env:NAME for a secret names the variable when it is not set."""
    with pytest.raises(
        ConfigError, match=r"session.secret: environment variable AUTHSHIM_SECRET is not set"
    ):
        parse_config(EXAMPLE, {})


def test_the_secret_never_shows_in_a_repr() -> None:
    """The session secret is masked wherever the config is printed."""
    config = parse_config(EXAMPLE, {"AUTHSHIM_SECRET": SECRET})
    assert SECRET not in repr(config) and SECRET not in str(config.session.secret)


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    """A file that is not TOML, or missing, gives one clear line."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nlisten=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("14d", 1209600), ("30m", 1800), ("5s", 5), ("250ms", 0.25), (3, 3)]
)
def test_durations(text: str | int, seconds: float) -> None:
    """Durations are written with a unit."""
    assert parse_duration(text) == seconds


def test_every_config_key_is_documented() -> None:
    """docs/configuration.md names every config key."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)`", doc))
    missing = [key for key in ALL_KEYS if key not in documented]
    assert not missing, f"undocumented keys: {missing}"


def test_the_account_sections_report_every_problem() -> None:
    """[lookup], [reset], [mail], [signup], [password_change] and [policy] name each mistake,
    and what one section needs from another."""
    raw = {
        **EXAMPLE,
        "lookup": {"by_email": "ftp://x/{email}", "headers": {"X-Key": "env:MISSING"}},
        "reset": {"request_path": "/accounts/login/", "link": "/no-token", "expires": "0s"},
        "signup": {"path": "/join", "email": "email", "password": "pw", "success": {}},
        "password_change": {"path": "change", "old": "old"},
        "policy": {"min_length": 20, "max_length": 10},
        "mail": {"transport": "carrier-pigeon", "from": "nobody"},
        "profile": {"refresh_on_login": "yes"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {"AUTHSHIM_SECRET": SECRET})
    problems = "\n".join(caught.value.problems)
    for key in [
        "lookup.by_email: must be an http(s):// URL containing {email}",
        "lookup.headers.X-Key: environment variable MISSING is not set",
        "reset.link",
        "reset.expires",
        "reset.request_path: /accounts/login/ is already intercepted by login",
        "signup.success: only applies with handler = 'upstream'",
        "password_change.path",
        "password_change.new",
        "policy.min_length",
        "mail.transport",
        "mail.from",
        "profile.refresh_on_login: must be bool",
    ]:
        assert key in problems, key
    bare = {**EXAMPLE, "reset": raw["reset"] | {"link": "https://x/r?t={token}", "expires": "1m"}}
    bare["signup"] = {"path": "/join", "email": "email", "password": "pw"}
    with pytest.raises(ConfigError) as caught:
        parse_config(bare, {"AUTHSHIM_SECRET": SECRET})
    problems = "\n".join(caught.value.problems)
    assert "reset: needs [mail]" in problems
    assert "signup.handler: 'local' in mode migrate needs [lookup]" in problems


def test_every_account_section_is_optional() -> None:
    """Without the new sections the features are off and the config loads as before."""
    config = parse_config(EXAMPLE, {"AUTHSHIM_SECRET": SECRET})
    assert (config.lookup, config.reset, config.mail, config.signup) == (None,) * 4
    assert config.password_change is None and config.profile.refresh_on_login is False


def test_the_listen_addresses_can_come_from_the_environment() -> None:
    """AUTHSHIM_LISTEN and AUTHSHIM_ADMIN_LISTEN replace the file's; a bad one is named."""
    env = {"AUTHSHIM_SECRET": SECRET, "LEGACY_LOOKUP_AUTH": "Bearer x"}
    env |= {"AUTHSHIM_LISTEN": "0.0.0.0:9000", "AUTHSHIM_ADMIN_LISTEN": "[::1]:9001"}
    config = load_config(ROOT / "examples" / "authshim.toml", env=env)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9000)
    assert (config.admin.host, config.admin.port) == ("::1", 9001)
    with pytest.raises(ConfigError, match=r"server\.listen: .*\(from AUTHSHIM_LISTEN\)"):
        load_config(ROOT / "examples" / "authshim.toml", env={**env, "AUTHSHIM_LISTEN": "nope"})


def test_hash_recipes_are_parsed_and_self_tested() -> None:
    """[[hashes.recipe]] compiles its steps and is refused, by key, when it does not
    reproduce its test hash or a step does not parse."""
    import copy
    import hashlib

    good = hashlib.sha1(b"NaCl" + hashlib.sha1(b"pw").hexdigest().encode()).hexdigest()
    recipe = {
        "name": "shop",
        "steps": ["sha1", "hex", "concat salt value", "sha1", "hex"],
        "test": {"password": "pw", "salt": "NaCl", "hash": good},
    }
    raw = copy.deepcopy(EXAMPLE)
    raw["hashes"] = {"recipe": [recipe]}
    config = parse_config(raw, {"AUTHSHIM_SECRET": SECRET})
    assert [r.name for r in config.recipes] == ["shop"]
    raw["hashes"] = {
        "recipe": [
            {**recipe, "test": {**recipe["test"], "hash": "0" * 40}},
            {**recipe, "name": "other", "steps": ["sha1", "md6"]},
        ]
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {"AUTHSHIM_SECRET": SECRET})
    text = str(caught.value)
    assert "hashes.recipe[0].test" in text and "hashes.recipe[1].steps" in text
