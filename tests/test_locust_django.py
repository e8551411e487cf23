"""bench/sitelocust.py headless against the Django recipe's real site behind `authshim serve`,
and the parts of it that make it work on any site (forms, sessions, the config's warnings)."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench import mixed
from bench.procs import ROOT
from tests.accounts import read_mail
from tests.fixtures.proxy import SECRET
from tests.fixtures.realapps import RECIPES, free_port, recipe_config, stop, wait_for_port

SITE = RECIPES / "django"
LOOKUP_AUTH = "Bearer locust-test-lookup-secret-0123456789"
ROWS = 24  # test users made in Django, one CSV row each
# As docs/performance.md tells an operator to make test users: a `manage.py shell` loop.
CREATE_USERS = f"""
from django.contrib.auth.models import User
for i in range({ROWS}):
    User.objects.create_user(f"load{{i:02d}}", f"load{{i:02d}}@example.com", f"pass-{{i:02d}}-load")
"""
PAGES = ("/private/", "/api/me")  # pages of the Django site that need a session
CLASSES = ("[first login]", "[migrated]", "[wrong password]", "[page]", "[reset]")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value: Any) -> str:
    """``value`` as TOML: strings, numbers, booleans, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        pairs = (f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"no TOML for {value!r}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def toml_text(document: Mapping[str, Any]) -> str:
    """A config document (tables of values, arrays of tables) as TOML text."""
    lines: list[str] = []
    for name, section in document.items():
        tables = section if isinstance(section, list) else [section]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())
            lines.append("")
    return "\n".join(lines)


def write_config(path: Path, *, port: int, upstream: str, folder: Path) -> None:
    """recipes/django/authshim.toml as the recipe tests run it (``recipe_config``: this test's
    store, upstream, mail folder, cheap argon2), listening on ``port`` and trusting the load
    generator's X-Forwarded-For as docs/performance.md asks, written for `authshim serve`."""
    written: dict[str, Any] = {}

    def change(raw: dict[str, Any]) -> None:
        raw["server"]["listen"] = f"127.0.0.1:{port}"
        raw["server"]["trusted_proxies"] = ["127.0.0.1"]
        raw["reset"]["link"] = f"http://127.0.0.1:{port}/.authshim/reset?token={{token}}"
        written.update(copy.deepcopy(raw))

    recipe_config(
        "django/authshim.toml", upstream=upstream, store_url=f"sqlite:///{folder / 'a.db'}",
        env={"LEGACY_LOOKUP_AUTH": LOOKUP_AUTH}, mail_folder=folder / "outbox", change=change,
    )  # fmt: skip
    path.write_text(toml_text(written), encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8")) == written


@contextlib.contextmanager
def process(
    argv: list[str], port: int, log: Path, *, env: Mapping[str, str], cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running until the block ends, once it listens on ``port``."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        stop(proc)


def django_env(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "legacysite.settings",
        "LEGACY_DB": str(folder / "legacy.sqlite3"),
        "LEGACY_MAIL_DIR": str(folder / "django-mail"),
        "LEGACY_LOOKUP_AUTH": LOOKUP_AUTH,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def make_users(folder: Path) -> Path:
    """Django's database, migrated, with ``ROWS`` test users; their CSV for the locustfile."""
    manage = [sys.executable, "manage.py"]
    env = django_env(folder)
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=SITE, env=env, check=True)
    subprocess.run([*manage, "shell", "-c", CREATE_USERS], cwd=SITE, env=env, check=True)
    users = folder / "users.csv"
    with users.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["login", "password", "email"])
        writer.writerows(
            (f"load{i:02d}", f"pass-{i:02d}-load", f"load{i:02d}@example.com") for i in range(ROWS)
        )
    return users


def exported(config: Path) -> dict[str, dict[str, Any]]:
    """authshim's store as `authshim users export` prints it, by username."""
    done = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "users", "export", "--config", str(config)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    records = (json.loads(line) for line in done.stdout.splitlines() if line.strip())
    return {r["username"]: r for r in records}


def login_outcomes(log: Path) -> Counter[str]:
    """How many logins authshim's log says ended in each outcome (captured, local_ok, ...)."""
    events = (json.loads(line.split(" authshim ", 1)[1]) for line in log.read_text().splitlines()
              if " authshim {" in line)  # fmt: skip
    return Counter(e["outcome"] for e in events if e["event"] == "login")


@pytest.mark.slow
def test_site_locustfile_against_the_django_recipe_without_failures(tmp_path: Path) -> None:
    """The locustfile, reading the recipe's config, logs a few dozen Django users in for the
    first time (each captured once), again (answered by authshim), with wrong passwords, views
    the site's pages with a session and asks for resets: no failures, and the store holds every
    user with the profile Django gave."""
    users = make_users(tmp_path)
    django_port, port = free_port(), free_port()
    config = tmp_path / "authshim.toml"
    write_config(config, port=port, upstream=f"http://127.0.0.1:{django_port}", folder=tmp_path)
    runserver = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{django_port}",
                 "--noreload"]  # fmt: skip
    serve = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)]
    authshim_env = {**os.environ, "AUTHSHIM_SECRET": SECRET, "LEGACY_LOOKUP_AUTH": LOOKUP_AUTH}
    with (
        process(runserver, django_port, tmp_path / "runserver.log", env=django_env(tmp_path),
                cwd=SITE),
        process(serve, port, tmp_path / "authshim.log", env=authshim_env, cwd=tmp_path),
    ):  # fmt: skip
        done = mixed.locust(
            f"http://127.0.0.1:{port}", users, seconds=40, users=10, out=tmp_path / "locust",
            locustfile="sitelocust.py",
            env={"AUTHSHIM_CONFIG": str(config), "AUTHSHIM_LOCUST_USERS": str(users),
                 "AUTHSHIM_LOCUST_PAGES": ",".join(PAGES)},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trusted_proxies" not in done.stderr  # no warning: the run is set up as documented
    stats = mixed.stats(tmp_path / "locust")
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats
    kinds = CLASSES if "reset" in tomllib.loads(config.read_text()) else CLASSES[:-1]
    for kind in kinds:
        assert any(kind in name for name in stats), f"no {kind} in {sorted(stats)}"
    for page in PAGES:
        assert f"GET {page} [page]" in stats, f"no views of {page} in {sorted(stats)}"

    def made(kind: str) -> int:
        return int(stats[f"POST /accounts/login/ [{kind}]"]["Request Count"])

    assert made("first login") == ROWS
    # What authshim did with them: each row captured once, later logins answered from the
    # store, wrong passwords refused by Django or by authshim; nothing else (no 429, no capture
    # failure). Its log may hold a request or two more: locust drops those cut off at the end.
    outcomes = login_outcomes(tmp_path / "authshim.log")
    assert set(outcomes) <= {"captured", "local_ok", "legacy_refused", "local_failed"}, outcomes
    assert outcomes["captured"] == ROWS and outcomes["local_ok"] >= made("migrated"), outcomes
    assert outcomes["legacy_refused"] + outcomes["local_failed"] >= made("wrong password")

    store = exported(config)
    assert sorted(store) == [f"load{i:02d}" for i in range(ROWS)]
    for name, user in store.items():
        meta = user["app_metadata"]["authshim"]
        assert meta["source"] == "login" and meta["legacy_id"], user
        assert user["email"] == f"{name}@example.com", user
    mailed = {m["To"] for m in read_mail(tmp_path / "outbox")}
    assert mailed and mailed <= {f"load{i:02d}@example.com" for i in range(ROWS)}


# A login form, then a sign-up form, each with its own hidden inputs (some unquoted, as HTML
# allows); and a page whose form a script builds from hidden inputs outside any <form>.
PAGES_SEEN = {
    "two forms": """
<form action="/login" method="post"><input type=hidden name=form_id value=login>
  <input type="text" name="username"><input type="password" name="password">
  <input type="hidden" name="csrf" value='l&amp;token'></form>
<form action="/signup" method=post><input type=hidden name=form_id value=signup>
  <input name="email"><input type="hidden" name="csrf" value="s-token"></form>
""",
    "scripted": '<div id="login"></div><input type="hidden" name="csrf" value="x-token">',
}
PROBE = """
import json, os
from bench import sitelocust as s
pages = json.loads(os.environ["PAGES_SEEN"])
print(json.dumps({
    "two forms": s.hidden_fields(pages["two forms"], "username"),
    "scripted": s.hidden_fields(pages["scripted"], "username"),
    "login_paths": s.SITE.login_paths,
    "warnings": s.WARNINGS,
    "resets": hasattr(s, "Resets"),
}))
"""


def probe(tmp_path: Path, config: str, users: str) -> dict[str, Any]:
    """What bench/sitelocust.py makes of ``config``, ``users`` and ``PAGES_SEEN``, read in a
    process of its own (importing locust patches the standard library with gevent)."""
    (tmp_path / "authshim.toml").write_text(config)
    (tmp_path / "users.csv").write_text(users)
    env = {**os.environ, "AUTHSHIM_CONFIG": str(tmp_path / "authshim.toml"),
           "AUTHSHIM_LOCUST_USERS": str(tmp_path / "users.csv"),
           "PAGES_SEEN": json.dumps(PAGES_SEEN)}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True, timeout=60)  # fmt: skip
    return dict(json.loads(done.stdout.splitlines()[-1]))


CONFIG = """
[[login]]
path = "/login"
[[login]]
path = "/api/login"
format = "json"
[reset]
request_path = "/forgot"
"""


def test_site_locustfile_sends_the_login_forms_hidden_inputs_and_warns(tmp_path: Path) -> None:
    """The hidden inputs sent are the login form's own, not another form's on the same page;
    a config that trusts no proxy, and a CSV without emails for [reset], are warned about (and
    no resets run); every [[login]] path counts as the login page."""
    seen = probe(tmp_path, CONFIG, "login,password\nalice,pw-1\n")
    assert seen["two forms"] == {"form_id": "login", "csrf": "l&token"}
    assert seen["scripted"] == {"csrf": "x-token"}
    assert seen["login_paths"] == ["/login", "/api/login"]
    assert len(seen["warnings"]) == 2, seen["warnings"]
    assert "server.trusted_proxies" in seen["warnings"][0] and "[reset]" in seen["warnings"][1]
    assert seen["resets"] is False

    trusting = '[server]\ntrusted_proxies = ["127.0.0.1"]\n' + CONFIG
    seen = probe(tmp_path, trusting, "login,password,email\nalice,pw-1,alice@example.com\n")
    assert seen["warnings"] == [] and seen["resets"] is True
