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
(wrong passwords, rate limits) are not failures; anything else unexpected is. Unmigrated rows
are handed out once each per locust process, to a first login or a whole password reset, so
that each is a true first visit (with ``--processes`` each process hands them all out: later
copies become migrated logins, and two processes resetting one row may follow one link twice,
the second time to "invalid link").

Password resets need ``[reset]`` (``request_path = "/accounts/password_reset/"``, the email in
the form field ``email``, ``answer = { redirect = "/accounts/password_reset/done/" }``,
``done = { redirect = "/accounts/login/" }``) and, for unmigrated users, ``[lookup]``. To
follow the mailed links, authshim must write its mail to a folder this process can read
(``mail.transport = "file"``), named by ``$AUTHSHIM_BENCH_MAIL``; without it resets are
requested only. ``python -m bench`` configures all of it (``bench/seed.py``).
"""

from __future__ import annotations

import csv
import os
import random
import re
import time
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task
from locust.exception import StopUser

LOGIN = "/accounts/login/"
RESET = "/accounts/password_reset/"  # reset.request_path
RESET_DONE = "/accounts/password_reset/done/"  # reset.answer's redirect
RESET_PAGE = "/.authshim/reset"  # authshim's page behind the mailed link
SESSION_COOKIE = os.environ.get("AUTHSHIM_BENCH_COOKIE", "authshim")
USERS_CSV = Path(os.environ.get("AUTHSHIM_BENCH_USERS", "bench/results/users.csv"))
MAIL_FOLDER = os.environ.get("AUTHSHIM_BENCH_MAIL", "")
MAIL_WAIT = 30.0  # seconds a reset mail may take before it counts as lost
_LINK = re.compile(r"/\.authshim/reset\?token=([A-Za-z0-9_-]{43})")


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


class Mailbox:
    """The folder authshim writes its mail to (``mail.transport = "file"``), read as the
    visitors' inbox: each new ``.eml`` once, keeping the reset links of the addresses a
    visitor waits for. Mail already there when locust starts is not read."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._read = {p.name for p in folder.glob("*.eml")} if folder.is_dir() else set()
        self._tokens: dict[str, list[str]] = {}  # address waited for -> tokens mailed to it

    def expect(self, address: str) -> None:
        """Keep the links mailed to ``address`` from now on (call it before the request)."""
        self._tokens.setdefault(address.lower(), [])

    def forget(self, address: str) -> None:
        """Stop keeping the links mailed to ``address``."""
        self._tokens.pop(address.lower(), None)

    def token(self, address: str) -> str | None:
        """The token of a link mailed to ``address`` since ``expect`` (each once), or None."""
        self._scan()
        tokens = self._tokens.get(address.lower())
        return tokens.pop(0) if tokens else None

    def _scan(self) -> None:
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.eml"):  # half-written mail is a hidden .tmp file
            if path.name in self._read:
                continue
            self._read.add(path.name)
            mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            tokens = self._tokens.get(str(mail["To"]).lower())
            link = _LINK.search(str(mail.get_content()))
            if tokens is not None and link is not None:
                tokens.append(link.group(1))


USERS = _load(USERS_CSV)
_FIRST_LOGINS: Iterator[dict[str, str]] = iter(USERS["unmigrated"])
MAILBOX = Mailbox(Path(MAIL_FOLDER)) if MAIL_FOLDER else None


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


class PasswordReset(SiteUser):
    """Forgot passwords, a few per hundred logins, in turn by unmigrated and migrated users.

    An unmigrated user (a row of its own, like a first login) goes the whole way when the mail
    can be read (``$AUTHSHIM_BENCH_MAIL``, the folder of ``mail.transport = "file"``): the
    request, the mail with the link, authshim's page, the new password (the row's own, so the
    CSV stays right), then a login, now answered by authshim. A migrated user only asks, and
    leaves the mail unread: setting a password ends the user's sessions, which would fail the
    page views of the visitors logged in as the same row. Without a readable mail folder (SMTP)
    every reset is a request only. A 429 (``limits.reset_*``) is a refusal, not a failure.
    """

    weight = 1
    wait_time = between(5, 15)
    turn = 0

    @task
    def reset(self) -> None:
        self.new_address()
        self.turn += 1
        unmigrated = self.turn % 2 == 1 and bool(USERS["unmigrated"])
        mailbox = MAILBOX if unmigrated else None
        row = next(_FIRST_LOGINS, None) if mailbox is not None else None
        if mailbox is not None and row is not None:
            self.whole_reset(row, mailbox)
            return
        kind = "unmigrated" if unmigrated else "migrated"
        self.request_reset(random.choice(USERS[kind])["email"], kind)

    def request_reset(self, address: str, kind: str) -> bool:
        """GET the form (CSRF cookie), POST the address; return whether it was accepted."""
        self.client.cookies.clear()
        self.client.get(RESET, name=f"{RESET} [page]")
        form = {"csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""), "email": address}
        with self.client.post(
            RESET, data=form, name=f"{RESET} [{kind}]", allow_redirects=False,
            catch_response=True,
        ) as r:  # fmt: skip
            # reset.answer: the same redirect whether or not anyone has the address.
            location = str(r.headers.get("Location", ""))
            accepted: bool = r.status_code == 302 and location.endswith(RESET_DONE)
            if accepted or r.status_code == 429:
                r.success()
            else:
                r.failure(f"reset request: {r.status_code} {location}")
            return accepted

    def whole_reset(self, row: dict[str, str], mailbox: Mailbox) -> None:
        """Request, mail, page, new password, login: an unmigrated user migrated by a reset."""
        address = row["email"]
        mailbox.expect(address)
        try:
            if not self.request_reset(address, "unmigrated"):
                return
            token = self.wait_for_link(mailbox, address)
        finally:
            mailbox.forget(address)
        if token is None:
            return
        page = f"{RESET_PAGE}?token={token}"
        with self.client.get(page, name=f"{RESET_PAGE} [page]", catch_response=True) as r:
            if r.status_code != 200 or f'value="{token}"' not in r.text:
                r.failure(f"reset page: {r.status_code}, form with the token: no")
                return
        form = {"token": token, "password": row["password"], "password2": row["password"]}
        with self.client.post(
            RESET_PAGE, data=form, name=f"{RESET_PAGE} [new password]", allow_redirects=False,
            catch_response=True,
        ) as r:  # fmt: skip
            # reset.done: back to the login form.
            if r.status_code != 302 or r.headers.get("Location") != LOGIN:
                r.failure(f"new password: {r.status_code} {r.headers.get('Location')}")
                return
        with self.form_login(address, row["password"], f"{LOGIN} [after reset]") as r:
            if r.status_code != 302 or not self.has_session(r):
                r.failure(f"login after reset: {r.status_code}, session: {self.has_session(r)}")

    def wait_for_link(self, mailbox: Mailbox, address: str) -> str | None:
        """The token of the link mailed to ``address``, reported as a request "MAIL reset link"
        that takes as long as the mail did to arrive (a failure when it never does)."""
        started = time.perf_counter()
        token = None
        while token is None and time.perf_counter() - started < MAIL_WAIT:
            token = mailbox.token(address)
            if token is None:
                time.sleep(0.01)  # gevent's, as locust patches it: other visitors run meanwhile
        waited_ms = (time.perf_counter() - started) * 1000
        lost = None if token else TimeoutError(f"no reset mail within {MAIL_WAIT:.0f} s")
        self.environment.events.request.fire(
            request_type="MAIL", name="reset link", response_time=waited_ms, response_length=0,
            response=None, context={}, exception=lost,
        )  # fmt: skip
        return token
