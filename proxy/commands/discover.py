"""``authshim discover URL [--try USER]``: read a legacy login page and propose ``[[login]]``.

With ``--try``, one real login (and one with a deliberately wrong password) goes to the legacy
app through the forwarder authshim uses, and the success rules are proposed from what happened
and checked with the same ``judge`` the login flow uses.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys
from typing import TextIO
from urllib.parse import urljoin, urlsplit

from proxy.config import ProfileMap, ProfileSource, UpstreamConfig
from proxy.discover import (
    LoginForm,
    alike,
    find_login_form,
    login_block,
    propose_failure,
    propose_success,
)
from proxy.errors import ProfileError, UpstreamError
from proxy.forward import Forwarder, UpstreamAnswer, create_client_session
from proxy.legacy import fetch_profile, judge, map_profile, set_cookies
from store.validation import identity_matches, normalise_identifier

# Where legacy apps commonly answer "who am I" as JSON, tried with the cookies a login set.
PROFILE_PATHS = (
    "/api/me",
    "/api/user",
    "/api/users/me",
    "/users/me",
    "/me",
    "/api/v1/me",
    "/wp-json/wp/v2/users/me?context=edit",
    "/?rest_route=/wp/v2/users/me&context=edit",
)
PROFILE_POINTERS = ("/user", "/profile", "/data/user", "/data", "")
MAX_REDIRECTS = 5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``discover`` to the ``authshim`` command."""
    p = subparsers.add_parser(
        "discover", help="read a legacy login page and propose its [[login]] config"
    )
    p.add_argument("url", help="the legacy login page, e.g. http://127.0.0.1:8000/wp-login.php")
    p.add_argument(
        "--try",
        dest="user",
        metavar="USER",
        help="log in once as USER (password from the terminal or stdin) to propose success rules",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``discover``; the password is read here, never taken from argv."""
    url = str(args.url)
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        print(f"authshim: not an http(s) URL: {url!r}", file=sys.stderr)
        return 2
    password = _read_password() if args.user else None
    return asyncio.run(discover(url, user=args.user, password=password, out=sys.stdout))


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\r\n")


class _Browser:
    """Cookies kept across requests to one origin, as a browser keeps them."""

    def __init__(self, forwarder: Forwarder, base: str) -> None:
        self.forwarder = forwarder
        self.base = base
        self.cookies: dict[str, str] = {}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": "authshim-discover", "Accept": "text/html,application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {**headers, **(extra or {})}

    async def send(self, method: str, path: str, body: bytes | None = None) -> UpstreamAnswer:
        extra = {"Referer": self.base + path, "Origin": self.base}
        if body is not None:
            extra["Content-Type"] = "application/x-www-form-urlencoded"
        answer = await self.forwarder.send(method, path, headers=self.headers(extra), body=body)
        self.cookies.update(set_cookies(answer.headers))
        return answer

    async def page(self, path: str) -> tuple[str, str]:
        """GET ``path``, following same-origin redirects; the final URL and the HTML."""
        for _ in range(MAX_REDIRECTS):
            answer = await self.send("GET", path)
            location = answer.headers.get("Location")
            if answer.status not in (301, 302, 303, 307, 308) or not location:
                return self.base + path, answer.body.decode("utf-8", "replace")
            target = urlsplit(urljoin(self.base + path, location))
            if f"{target.scheme}://{target.netloc}" != self.base:
                break
            path = target.path + (f"?{target.query}" if target.query else "")
        raise UpstreamError(f"{path}: too many redirects or a redirect to another site")


async def discover(url: str, *, user: str | None, password: str | None, out: TextIO) -> int:
    """Print the proposed ``[[login]]`` block for the login page at ``url``; 0 when found."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    page_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    config = UpstreamConfig(url=base, connect_timeout=5.0, read_timeout=30.0, pool_size=4)
    session = create_client_session(config)
    forwarder = Forwarder(session, config, identity_strip=frozenset())
    try:
        page_url, html = await _Browser(forwarder, base).page(page_path)
        form = find_login_form(html, page_url)
        if form is None:
            print(f"# no login form (a form with one password field) at {url}", file=out)
            return 1
        if form.method != "POST":
            print(f"# the form at {url} is sent with {form.method}, not POST", file=out)
            return 1
        if not form.action.startswith(base):
            print(f"# note: the form posts to {form.action} (another origin)", file=out)
        if user is None or password is None:
            out.write(login_block(form))
            return 0
        return await _try(forwarder, base, page_path, form, user, password, out)
    except UpstreamError as exc:
        print(f"# {exc}", file=out)
        return 1
    finally:
        await session.close()


async def _attempt(
    forwarder: Forwarder, base: str, page_path: str, user: str, password: str
) -> tuple[UpstreamAnswer, dict[str, str]]:
    """One login with a fresh cookie jar (and so a fresh CSRF token); the answer and the
    cookies the browser held before it posted."""
    browser = _Browser(forwarder, base)
    page_url, html = await browser.page(page_path)
    form = find_login_form(html, page_url)
    if form is None:
        raise UpstreamError(f"the login form at {page_url} went away")
    before = dict(browser.cookies)
    answer = await browser.send("POST", _path(form), form.body(user, password))
    return answer, before


def _path(form: LoginForm) -> str:
    action = urlsplit(form.action)
    return (action.path or "/") + (f"?{action.query}" if action.query else "")


def _describe(answer: UpstreamAnswer) -> str:
    where = f", Location {answer.headers['Location']}" if "Location" in answer.headers else ""
    cookies = ", ".join(set_cookies(answer.headers)) or "none"
    return f"{answer.status}{where}, cookies set: {cookies}"


async def _try(
    forwarder: Forwarder,
    base: str,
    page_path: str,
    form: LoginForm,
    user: str,
    password: str,
    out: TextIO,
) -> int:
    good, before = await _attempt(forwarder, base, page_path, user, password)
    # A made-up wrong password: the contrast the rules are proposed from.
    wrong = "wrong-" + secrets.token_urlsafe(12)
    bad, _ = await _attempt(forwarder, base, page_path, user, wrong)
    form_url = base + _path(form)
    print(f"# the right password:  {_describe(good)}", file=out)
    print(f"# a wrong password:    {_describe(bad)}", file=out)
    for same in alike(good, bad, form_url):
        print(f"# could not tell apart by {same}", file=out)
    rules = propose_success(good, bad, form_url)
    failure = propose_failure(bad, form_url)
    if rules is None:
        print("# the two answers look alike: no success rule tells them apart", file=out)
        out.write(login_block(form, failure=failure))
        return 1
    if rules.location is not None:
        print("# location: a right password sent back to the form (a locked account) or where "
              "a wrong one goes is no success", file=out)  # fmt: skip
    print("# a login that goes on elsewhere (a second factor) cannot be seen from one user: "
          'if the site has one, add step = { location = { prefix = "/its/page" } }',
          file=out)  # fmt: skip
    ok = judge(good, rules, form_url) and not judge(bad, rules, form_url)
    if ok:
        print("# checked: these success rules hold for the right password only", file=out)
    else:
        print("# WARNING: these success rules do not tell the two answers apart", file=out)
    profile = await _profile_sources(forwarder, good, before, user, out)
    location = good.headers.get("Location", "")
    target = urlsplit(urljoin(base + page_path, location)) if location else None
    redirect = target.path if target and f"{target.scheme}://{target.netloc}" == base else "/"
    out.write(
        login_block(
            form, success=rules, profile=profile, answer_redirect=redirect or "/", failure=failure
        )
    )
    return 0 if ok else 1


async def _profile_sources(
    forwarder: Forwarder,
    good: UpstreamAnswer,
    before: dict[str, str],
    user: str,
    out: TextIO,
) -> dict[str, str] | None:
    """Try each likely profile source with what the login set; report and return the first
    one that names the user who logged in."""
    client = {"Cookie": "; ".join(f"{k}={v}" for k, v in before.items())} if before else {}
    wanted = normalise_identifier(user)
    found: list[dict[str, str]] = []
    sources = [ProfileSource(json=p) for p in PROFILE_POINTERS]
    sources += [ProfileSource(fetch=p) for p in PROFILE_PATHS]
    for source in sources:
        try:
            profile = await fetch_profile(forwarder, source, good, client)
        except (ProfileError, UpstreamError):
            continue
        if identity_matches(wanted, map_profile(profile, ProfileMap())):
            key, value = (
                ("json", source.json) if source.json is not None else ("fetch", source.fetch)
            )
            keys = ", ".join(profile)
            print(f"# profile source available: {key} = {value!r} (keys: {keys})", file=out)
            found.append({key: str(value)})
    if not found:
        print(
            "# no profile source named the user: configure a look-up ([lookup]) or add a "
            "JSON 'who am I' endpoint to the legacy app",
            file=out,
        )
        return None
    return found[0]
