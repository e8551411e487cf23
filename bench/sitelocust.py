"""A locustfile for any site behind authshim: routes, fields and formats from its config.

    AUTHSHIM_CONFIG=authshim.toml AUTHSHIM_LOCUST_USERS=users.csv \\
        locust -f bench/sitelocust.py --headless -u 50 -r 10 -t 60s -H https://staging.example.com

What it reads:

- ``$AUTHSHIM_CONFIG``, the operator's authshim config (TOML, read as text: no secret is
  needed): the first ``[[login]]`` route (``path``, ``format`` form or json, the
  ``identifier`` and ``password`` fields), ``session.cookie``, and ``[reset]``
  (``request_path``, ``format``, ``email``) when it is there;
- ``$AUTHSHIM_LOCUST_USERS``, a CSV with the columns ``login`` (email or username, as the
  route's identifier) and ``password``: real test users of the legacy site (``authshim users
  export`` cannot give passwords; create them in the legacy app, see docs/performance.md);
- ``$AUTHSHIM_LOCUST_PAGES``, comma-separated page paths viewed with a session (default
  ``/``); ``$AUTHSHIM_LOCUST_LOGIN`` picks another ``[[login]]`` by its path.

The classes, each reported under its own name: a row's first login in this run
``[first login]`` (captured if the user had not migrated: use fresh test users for that
figure), its later logins ``[migrated]``, wrong passwords ``[wrong password]`` (a refusal or a
429 is right, a session is a failure), page views with a session ``[page]``, and password
reset requests ``[reset]`` where ``[reset]`` is configured (the mail is not followed). Form
pages are fetched first and their hidden inputs (CSRF tokens) sent back, as a browser does.
Every visitor sends its own ``X-Forwarded-For``; list the load generator in
``server.trusted_proxies`` or the brute-force limits count everyone as one address.
"""

from __future__ import annotations

import csv
import html
import os
import random
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task

_HIDDEN = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


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
    return Site(login, reset, cookie, paths)


def read_users(path: Path) -> list[dict[str, str]]:
    """The operator's test users: ``login,password`` rows."""
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("login") and r.get("password")]
    if not rows:
        raise SystemExit(f"{path}: no rows with login and password columns")
    return rows


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a form page (CSRF tokens and the like)."""
    fields = {}
    for tag in _HIDDEN.findall(page):
        attrs = {m[0].lower(): html.unescape(m[1] or m[2]) for m in _ATTR.findall(tag)}
        if attrs.get("type", "").lower() == "hidden" and attrs.get("name"):
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


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
_FIRST: Iterator[dict[str, str]] = iter(random.sample(USERS, len(USERS)))
_LOGGED_IN: set[str] = set()


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
        form = {**hidden_fields(page.text), **data}
        return self.client.post(route.path, data=form, name=name, allow_redirects=False,
                                catch_response=True)  # fmt: skip

    def login(self, row: dict[str, str], password: str, kind: str) -> Any:
        return self.submit(SITE.login, (row["login"], password), f"{SITE.login.path} [{kind}]")

    def has_session(self, response: Any) -> bool:
        return SITE.cookie in response.cookies


class Logins(Visitor):
    """Right passwords: each row's first login in this run, then its later ones."""

    weight = 2

    @task
    def log_in(self) -> None:
        row = next(_FIRST, None)
        kind = "first login"
        if row is None:
            row, kind = random.choice(USERS), "migrated"
        with self.login(row, row["password"], kind) as r:
            if not self.has_session(r):
                r.failure(f"{kind}: {r.status_code} without a session cookie")
        _LOGGED_IN.add(row["login"])


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
        self.row = random.choice(USERS)
        with self.login(self.row, self.row["password"], "page viewer login") as r:
            if not self.has_session(r):
                r.failure(f"page viewer login: {r.status_code}")

    @task
    def page(self) -> None:
        path = random.choice(SITE.pages)
        with self.client.get(path, name=f"{path} [page]", catch_response=True) as r:
            if r.status_code >= 400:
                r.failure(f"page: {r.status_code}")


class Resets(Visitor):
    """Password reset requests, where [reset] is configured; a 429 is a refusal."""

    weight = 1
    wait_time = between(5, 15)

    @task
    def reset(self) -> None:
        if SITE.reset is None:
            return
        self.new_address()
        row = random.choice(USERS)
        address = row.get("email") or row["login"]
        with self.submit(SITE.reset, (address,), f"{SITE.reset.path} [reset]") as r:
            if r.status_code >= 400 and r.status_code != 429:
                r.failure(f"reset request: {r.status_code}")
            else:
                r.success()


if SITE.reset is None:
    del Resets  # no [reset]: locust runs only the classes this module holds
