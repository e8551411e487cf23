"""The built-in demo legacy site for ``authshim demo``: a small Django-like app.

It keeps PBKDF2 password hashes (as Django does), protects its login form with a CSRF token,
and trusts the ``X-Forwarded-User`` header that authshim sets, which is how a real site is told
who is logged in once authshim answers its logins.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DEMO_USERS = (
    (1, "alice", "alice@example.com", "wonderland", "Alice Liddell"),
    (2, "bob", "bob@example.com", "builder123", "Bob Builder"),
    (3, "Carol", "Carol@Example.com", "carolsings", "Carol Singer"),
)


def pbkdf2(password: str, salt: str, iterations: int = 60_000) -> str:
    """A Django-style ``pbkdf2_sha256$iterations$salt$hash`` string."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def check_pbkdf2(password: str, encoded: str) -> bool:
    _, iterations, salt, _ = encoded.split("$")
    return hmac.compare_digest(pbkdf2(password, salt, int(iterations)), encoded)


@dataclass
class DemoSite:
    """The demo site's users (by lower-case username) and its own sessions."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def seeded(cls) -> DemoSite:
        site = cls()
        for legacy_id, username, email, password, name in DEMO_USERS:
            key = username.lower()
            site.users[key] = {"id": legacy_id, "username": username, "email": email, "name": name}
            site.hashes[key] = pbkdf2(password, secrets.token_hex(6))
        return site

    def authenticate(self, identifier: str, password: str) -> dict[str, Any] | None:
        ident = identifier.strip().lower()
        for key, user in self.users.items():
            if ident in (key, user["email"].lower()) and check_pbkdf2(password, self.hashes[key]):
                return user
        return None

    def session_user(self, request: web.Request) -> dict[str, Any] | None:
        key = self.sessions.get(request.cookies.get("sessionid", ""))
        return self.users.get(key) if key else None


def _page(title: str, body: str) -> web.Response:
    doc = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}<p><a href='/'>Home</a></p></body></html>"
    )
    return web.Response(text=doc, content_type="text/html")


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location})


def create_demo_site(site: DemoSite) -> web.Application:
    """The demo legacy site as an aiohttp app."""

    async def home(request: web.Request) -> web.Response:
        links = "<ul><li><a href='/accounts/login/'>Log in</a></li>"
        links += "<li><a href='/private/'>Private page</a></li>"
        links += "<li><a href='/accounts/logout/'>Log out</a></li></ul>"
        return _page("Legacy demo site", links)

    async def login_page(request: web.Request) -> web.Response:
        token = secrets.token_hex(16)
        error = (
            "<p role='alert'>Wrong username or password.</p>" if "error" in request.query else ""
        )
        nxt = html.escape(request.query.get("next", ""), quote=True)
        form = (
            f"{error}<form method='post'>"
            f"<input type='hidden' name='csrfmiddlewaretoken' value='{token}'>"
            f"<input type='hidden' name='next' value='{nxt}'>"
            "<label>Username <input name='username' autocomplete='username'></label> "
            "<label>Password <input type='password' name='password'></label> "
            "<button type='submit'>Log in</button></form>"
        )
        response = _page("Log in", form)
        response.set_cookie("csrftoken", token, samesite="Lax")
        return response

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        csrf = str(form.get("csrfmiddlewaretoken", ""))
        if not csrf or not hmac.compare_digest(csrf, request.cookies.get("csrftoken", "")):
            return web.Response(status=403, text="CSRF verification failed.")
        user = site.authenticate(str(form.get("username", "")), str(form.get("password", "")))
        if user is None:
            return _redirect("/accounts/login/?error=1")
        sid = secrets.token_hex(16)
        site.sessions[sid] = user["username"].lower()
        # A real site checks ``next``; authshim's own answers only take same-site paths.
        nxt = str(form.get("next") or "")
        response = _redirect(
            nxt if nxt.startswith("/") and not nxt.startswith("//") else "/private/"
        )
        response.set_cookie("sessionid", sid, httponly=True, samesite="Lax")
        return response

    async def api_login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            user = site.authenticate(str(body["email"]), str(body["password"]))
        except (ValueError, KeyError, TypeError):
            return web.json_response({"ok": False, "error": "bad request"}, status=400)
        if user is None:
            return web.json_response({"ok": False}, status=401)
        return web.json_response({"ok": True, "user": user})

    async def me(request: web.Request) -> web.Response:
        user = site.session_user(request)
        if user is None:
            return web.json_response({"detail": "not logged in"}, status=403)
        return web.json_response(user)

    async def private(request: web.Request) -> web.Response:
        # The demo trusts authshim's header: it is only reachable through authshim.
        via_header = request.headers.get("X-Forwarded-User")
        own = site.session_user(request)
        if via_header:
            who = f"{html.escape(via_header)} (told by authshim's X-Forwarded-User header)"
        elif own:
            who = f"{html.escape(own['username'])} (from the legacy site's own session)"
        else:
            return _redirect("/accounts/login/?next=/private/")
        return _page("Private page", f"<p>You are logged in as <strong>{who}</strong>.</p>")

    async def logout(request: web.Request) -> web.Response:
        site.sessions.pop(request.cookies.get("sessionid", ""), None)
        response = _redirect("/")
        response.del_cookie("sessionid")
        return response

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/accounts/login/", login_page)
    app.router.add_post("/accounts/login/", login)
    app.router.add_post("/api/login", api_login)
    app.router.add_get("/api/me", me)
    app.router.add_get("/private/", private)
    app.router.add_route("*", "/accounts/logout/", logout)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m proxy.demo_site [HOST:PORT]``: the demo site alone, a stand-in legacy app
    (examples/compose runs it as the ``legacy`` service)."""
    from proxy.config import parse_listen

    args = list(sys.argv[1:] if argv is None else argv)
    host, port = parse_listen(args[0] if args else "127.0.0.1:8000")
    web.run_app(create_demo_site(DemoSite.seeded()), host=host, port=port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
