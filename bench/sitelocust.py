"""A locustfile for any site behind authshim: routes, fields and formats from its config.

    AUTHSHIM_CONFIG=authshim.toml AUTHSHIM_LOCUST_USERS=users.csv \\
        locust -f bench/sitelocust.py --headless -u 50 -r 10 -t 60s -H https://staging.example.com

What it reads:

- ``$AUTHSHIM_CONFIG``, the operator's authshim config (TOML, read as text: no secret is
  needed): the first ``[[login]]`` route (``path``, ``format`` form or json, the
  ``identifier`` and ``password`` fields), ``session.cookie``, and ``[reset]``
  (``request_path``, ``format``, ``email``) when it is there;
- ``$AUTHSHIM_LOCUST_USERS``, a CSV with the columns ``login`` (email or username, as the
  route's identifier) and ``password``, and ``email`` where the login is not one (for
  ``[reset]``): real test users of the legacy site (``authshim users export`` cannot give
  passwords; create them in the legacy app, see docs/performance.md);
- ``$AUTHSHIM_LOCUST_PAGES``, comma-separated page paths viewed with a session (default
  ``/``); ``$AUTHSHIM_LOCUST_LOGIN`` picks another ``[[login]]`` by its path.

The classes, each reported under its own name: a row's first login in this run
``[first login]`` (captured if the user had not migrated: use fresh test users for that
figure), logins of rows that have logged in ``[migrated]``, wrong passwords ``[wrong
password]`` (a refusal or a 429 is right, a session is a failure), page views with a session
``[page]`` (an error, or a redirect to a login path, is a failure), and password reset
requests ``[reset]`` where ``[reset]`` is configured (the mail is not followed). Page viewers
log in first, as ``[first login]`` or ``[migrated]`` like everyone else. Form pages are
fetched first and the hidden inputs (CSRF tokens) of the form that holds the route's fields
sent back, as a browser does. Every visitor sends its own ``X-Forwarded-For``; list the load
generator in ``server.trusted_proxies`` or the brute-force limits count everyone as one
address (the run warns when the config trusts no proxy).
"""

from __future__ import annotations

import csv
import html
import logging
import os
import random
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from locust import HttpUser, between, events, task

_FORM = re.compile(r"<form\b.*?</form\s*>", re.IGNORECASE | re.DOTALL)
_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
# Quoted or, as HTML allows, unquoted attribute values.
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""")


@dataclass(frozen=True)
class Route:
    path: str
    format: str  # "form" or "json"
    fields: tuple[str, ...]  # identifier and password (login), or the email (reset)


@dataclass(frozen=True)
class Site:
    login: Route
    reset: Route | None
    cookie: str
    pages: tuple[str, ...]
    login_paths: tuple[str, ...]  # every [[login]] path: a page sent there had no session
    trusts_proxy: bool  # server.trusted_proxies lists someone


def read_site(config: Mapping[str, Any], pages: str = "", login_path: str = "") -> Site:
    """What the load needs from an authshim config (a parsed TOML document)."""
    logins = config.get("login") or []
    if not logins:
        raise SystemExit("the config has no [[login]] route")
    chosen = next((r for r in logins if r.get("path") == login_path), logins[0])
    fields = (chosen.get("identifier", "username"), chosen.get("password", "password"))
    login = Route(chosen["path"], chosen.get("format", "form"), fields)
    raw_reset = config.get("reset")
    reset = None
    if isinstance(raw_reset, dict) and "request_path" in raw_reset:
        reset = Route(raw_reset["request_path"], raw_reset.get("format", "form"),
                      (raw_reset.get("email", "email"),))  # fmt: skip
    cookie = str(config.get("session", {}).get("cookie", "authshim"))
    paths = tuple(p.strip() for p in pages.split(",") if p.strip()) or ("/",)
    login_paths = tuple(str(r["path"]) for r in logins)
    trusts_proxy = bool(config.get("server", {}).get("trusted_proxies"))
    return Site(login, reset, cookie, paths, login_paths, trusts_proxy)


def read_users(path: Path) -> list[dict[str, str]]:
    """The operator's test users: ``login,password`` rows."""
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("login") and r.get("password")]
    if not rows:
        raise SystemExit(f"{path}: no rows with login and password columns")
    return rows


def reset_address(row: Mapping[str, str]) -> str:
    """The address a row's reset request names: its ``email``, else its login."""
    return row.get("email") or row["login"]


def _inputs(markup: str) -> list[dict[str, str]]:
    """The attributes of every ``<input>`` in ``markup``."""
    return [
        {m[0].lower(): html.unescape(m[1] or m[2] or m[3]) for m in _ATTR.findall(tag)}
        for tag in _INPUT.findall(markup)
    ]


def hidden_fields(page: str, field: str = "") -> dict[str, str]:
    """The hidden inputs (CSRF tokens and the like) of the page's form that has an input named
    ``field``, or of the whole page when no form has one (a form built by script)."""
    # A page may hold several forms (log in, sign up, search), each with its own hidden inputs.
    forms = _FORM.findall(page)
    chosen = next((f for f in forms if any(i.get("name") == field for i in _inputs(f))), page)
    return {
        i["name"]: i.get("value", "")
        for i in _inputs(chosen)
        if i.get("type", "").lower() == "hidden" and i.get("name")
    }


def site_warnings(site: Site, reset_rows: list[dict[str, str]]) -> list[str]:
    """What in the config or the CSV makes the figures mean less than they seem to
    (``reset_rows``: the rows with an address to ask a reset for)."""
    found = []
    if not site.trusts_proxy:
        found.append(
            "the config lists no server.trusted_proxies: authshim counts every visitor as the "
            "load generator's address, so wrong passwords soon block everyone's logins (429)"
        )
    if site.reset is not None and not reset_rows:
        found.append("no CSV row has an email (an email column, or emails as logins): "
                     "no [reset] requests")  # fmt: skip
    return found


def _site() -> tuple[Site, list[dict[str, str]]]:
    config = os.environ.get("AUTHSHIM_CONFIG")
    users = os.environ.get("AUTHSHIM_LOCUST_USERS")
    if not config or not users:
        raise SystemExit("set AUTHSHIM_CONFIG (your authshim.toml) and AUTHSHIM_LOCUST_USERS "
                         "(a CSV of login,password)")  # fmt: skip
    with Path(config).open("rb") as f:
        doc = tomllib.load(f)
    site = read_site(doc, os.environ.get("AUTHSHIM_LOCUST_PAGES", ""),
                     os.environ.get("AUTHSHIM_LOCUST_LOGIN", ""))  # fmt: skip
    return site, read_users(Path(users))


SITE, USERS = _site()
RESET_ROWS = [r for r in USERS if "@" in reset_address(r)]
WARNINGS = site_warnings(SITE, RESET_ROWS)
_FIRST: Iterator[dict[str, str]] = iter(random.sample(USERS, len(USERS)))
_LOGGED_IN: list[dict[str, str]] = []  # rows whose first login in this run gave a session


def next_login() -> tuple[dict[str, str], str]:
    """The row to log in next and its class: every row's first login once, then rows that
    have logged in (any row while their first logins are still under way)."""
    row = next(_FIRST, None)
    if row is not None:
        return row, "first login"
    return random.choice(_LOGGED_IN or USERS), "migrated"


def _warn(**_: Any) -> None:
    """Say what ``site_warnings`` found, once locust's logging is set up."""
    for text in WARNINGS:
        logging.getLogger("sitelocust").warning(text)


events.init.add_listener(_warn)


class Visitor(HttpUser):
    """What every kind of visitor shares: an address of its own and the configured login."""

    abstract = True
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.new_address()

    def new_address(self) -> None:
        address = ".".join(str(random.randint(1, 254)) for _ in range(3))
        self.client.headers["X-Forwarded-For"] = f"10.{address}"

    def submit(self, route: Route, values: tuple[str, ...], name: str) -> Any:
        """GET the route's page for its hidden fields (forms), then send the values."""
        self.client.cookies.clear()
        data = dict(zip(route.fields, values, strict=True))
        if route.format == "json":
            return self.client.post(route.path, json=data, name=name, allow_redirects=False,
                                    catch_response=True)  # fmt: skip
        page = self.client.get(route.path, name=f"{route.path} [form page]")
        form = {**hidden_fields(page.text, route.fields[0]), **data}
        return self.client.post(route.path, data=form, name=name, allow_redirects=False,
                                catch_response=True)  # fmt: skip

    def login(self, row: dict[str, str], password: str, kind: str) -> Any:
        return self.submit(SITE.login, (row["login"], password), f"{SITE.login.path} [{kind}]")

    def has_session(self, response: Any) -> bool:
        return SITE.cookie in response.cookies

    def log_in(self) -> None:
        """Log the next row in with its right password (``next_login``); a session must come
        back."""
        row, kind = next_login()
        with self.login(row, row["password"], kind) as r:
            if not self.has_session(r):
                r.failure(f"{kind}: {r.status_code} without a session cookie")
                return
        if kind == "first login":
            _LOGGED_IN.append(row)


class Logins(Visitor):
    """Right passwords: each row's first login in this run, then later ones."""

    weight = 2

    @task
    def logins(self) -> None:
        self.log_in()


class WrongPasswords(Visitor):
    """Mistyped passwords, each from another address: refused (or 429), never a session."""

    weight = 1

    @task
    def wrong(self) -> None:
        self.new_address()
        row = random.choice(USERS)
        with self.login(row, row["password"] + "-wrong", "wrong password") as r:
            if self.has_session(r) or r.status_code >= 500:
                r.failure(f"wrong password: {r.status_code}, session: {self.has_session(r)}")
            else:
                r.success()


class PageViews(Visitor):
    """A logged-in user reading the configured pages."""

    weight = 6

    def on_start(self) -> None:
        super().on_start()
        self.log_in()

    @task
    def page(self) -> None:
        path = random.choice(SITE.pages)
        with self.client.get(path, name=f"{path} [page]", catch_response=True) as r:
            if r.status_code >= 400:
                r.failure(f"page: {r.status_code}")
            elif r.history and urlsplit(r.url).path in SITE.login_paths:
                r.failure(f"page: sent to the login page {urlsplit(r.url).path}: no session")


class Resets(Visitor):
    """Password reset requests, where [reset] is configured; a 429 is a refusal."""

    weight = 1
    wait_time = between(5, 15)

    @task
    def reset(self) -> None:
        if SITE.reset is None:
            return
        self.new_address()
        address = reset_address(random.choice(RESET_ROWS))
        with self.submit(SITE.reset, (address,), f"{SITE.reset.path} [reset]") as r:
            if r.status_code >= 400 and r.status_code != 429:
                r.failure(f"reset request: {r.status_code}")
            else:
                r.success()


if SITE.reset is None or not RESET_ROWS:
    del Resets  # no [reset] or no address: locust runs only the classes this module holds
