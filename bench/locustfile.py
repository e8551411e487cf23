"""A realistic mix of authshim's traffic for locust.

    locust -f bench/locustfile.py --headless -u 100 -r 20 -t 60s -H http://127.0.0.1:8080

The users come from a CSV (``$AUTHSHIM_BENCH_USERS``, default ``bench/results/users.csv``,
written by ``python -m bench``), with the columns:

    kind            ``migrated`` (in authshim's store) or ``unmigrated`` (legacy app only)
    email           the identifier typed into the login form
    username        the name the legacy app knows; pages must be served for this user
    password        the right password
    wrong_password  a wrong one

The site is the Django-like shape of the bench's legacy stub (and of tests/fixtures/legacy.py):
GET ``/accounts/login/`` sets a CSRF cookie, the form POSTs back to it, a success is a 302 that
sets authshim's session cookie (``authshim``). Each simulated visitor sends its own
``X-Forwarded-For`` address, so authshim must list the load generator's address in
``server.trusted_proxies`` for its brute-force limits to count per visitor. Expected refusals
(wrong passwords) are not failures; anything else unexpected is. Unmigrated rows are handed
out once each per locust process, so that each is a true first login (with ``--processes``
each process hands them all out: later copies become migrated logins).
"""

from __future__ import annotations

import csv
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task
from locust.exception import StopUser

LOGIN = "/accounts/login/"
SESSION_COOKIE = os.environ.get("AUTHSHIM_BENCH_COOKIE", "authshim")
USERS_CSV = Path(os.environ.get("AUTHSHIM_BENCH_USERS", "bench/results/users.csv"))


def _load(path: Path) -> dict[str, list[dict[str, str]]]:
    if not path.exists():
        raise SystemExit(f"{path}: no users CSV; run `python -m bench --quick` or set "
                         "AUTHSHIM_BENCH_USERS")  # fmt: skip
    rows: dict[str, list[dict[str, str]]] = {"migrated": [], "unmigrated": []}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["kind"], []).append(row)
    if not rows["migrated"]:
        raise SystemExit(f"{path}: no migrated users")
    return rows


USERS = _load(USERS_CSV)
_FIRST_LOGINS: Iterator[dict[str, str]] = iter(USERS["unmigrated"])


class SiteUser(HttpUser):
    """What every kind of visitor shares: the login form, as a browser submits it."""

    abstract = True
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.new_address()

    def new_address(self) -> None:
        """Come from an address of one's own, as behind a load balancer (authshim must trust
        the load generator's address as a proxy: server.trusted_proxies)."""
        address = ".".join(str(random.randint(1, 254)) for _ in range(3))
        self.client.headers["X-Forwarded-For"] = f"10.{address}"

    def form_login(self, identifier: str, password: str, name: str) -> Any:
        """GET the login page (CSRF cookie), POST the form; return the POST's response."""
        self.client.cookies.clear()
        self.client.get(LOGIN, name=f"{LOGIN} [page]")
        token = self.client.cookies.get("csrftoken", "")
        form = {"csrfmiddlewaretoken": token, "username": identifier, "password": password}
        return self.client.post(
            LOGIN, data=form, name=name, allow_redirects=False, catch_response=True
        )

    def has_session(self, response: Any) -> bool:
        return SESSION_COOKIE in response.cookies


class FirstLogin(SiteUser):
    """An unmigrated user logging in for the first time: forwarded, accepted, captured."""

    weight = 1

    @task
    def first_login(self) -> None:
        row = next(_FIRST_LOGINS, None)
        if row is None:
            raise StopUser()  # every unmigrated row has logged in once
        with self.form_login(row["email"], row["password"], f"{LOGIN} [first login]") as r:
            if r.status_code != 302 or not self.has_session(r):
                r.failure(f"first login: {r.status_code}, session cookie: {self.has_session(r)}")


class MigratedLogin(SiteUser):
    """A migrated user logging in: answered by authshim (argon2id) alone."""

    weight = 2

    @task
    def login(self) -> None:
        row = random.choice(USERS["migrated"])
        with self.form_login(row["email"], row["password"], f"{LOGIN} [migrated]") as r:
            if r.status_code != 302 or not self.has_session(r):
                r.failure(f"migrated login: {r.status_code}, session: {self.has_session(r)}")


class WrongPassword(SiteUser):
    """Mistyped passwords, each by another visitor: refused by authshim (migrated) or by the
    legacy app (not yet). One address typing wrong passwords all day is an attacker, and the
    brute-force limits answer it 429, which also counts as a refusal here."""

    weight = 1

    @task
    def wrong(self) -> None:
        self.new_address()
        kind = random.choice([k for k in ("migrated", "unmigrated") if USERS.get(k)])
        row = random.choice(USERS[kind])
        with self.form_login(row["email"], row["wrong_password"], f"{LOGIN} [wrong, {kind}]") as r:
            # authshim redirects back to the form; the legacy app renders it again with an error.
            if self.has_session(r) or r.status_code not in (200, 302, 429):
                r.failure(f"wrong password: {r.status_code}, session: {self.has_session(r)}")
            else:
                r.success()


class PageViews(SiteUser):
    """A logged-in migrated user reading pages; the legacy app must see who it is."""

    weight = 6

    def on_start(self) -> None:
        super().on_start()
        self.row = random.choice(USERS["migrated"])
        with self.form_login(self.row["email"], self.row["password"], f"{LOGIN} [migrated]") as r:
            if r.status_code != 302 or not self.has_session(r):
                r.failure(f"page viewer login: {r.status_code}")

    @task(5)
    def page(self) -> None:
        self._view(f"/page/{random.randint(1, 1000)}", "/page/[n]")

    @task(1)
    def home(self) -> None:
        self._view("/", "/")

    def _view(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as r:
            if r.status_code != 200 or f"for {self.row['username']}<" not in r.text:
                r.failure(f"page: {r.status_code}, identity not passed on")


# PasswordReset (left out on purpose): authshim has no password-reset flow yet (DESIGN.md,
# flows/reset.py). Add the class with the flow, rather than a stub that measures nothing.
