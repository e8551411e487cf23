"""The legacy stub: a Django-like site whose every ``NAME@bench.test`` user exists.

Usage: ``python -m bench.stubs --port PORT [--login-delay SECONDS]``; prints ``ready`` once
it listens. Users need no table: any ``NAME@bench.test`` (or bare ``NAME``, letters, digits
and ``-``) logs in with ``PASSWORD``, so a benchmark can log in as many first-time users as
it likes. Sessions are stateless (an HMAC of the name), so the stub's memory stays flat.
Pages answer with the ``X-Forwarded-User`` authshim sent, so a client can check identity.

For password resets it has what authshim's ``[lookup]`` and ``[reset]`` need: the look-up
``GET /internal/users?email=...`` (or ``?username=``) answers a user's profile or 404, and the
"forgot password" form ``/accounts/password_reset/`` (GET sets a CSRF cookie; a POST that
reaches the stub, as it does without a look-up, is answered as Django does, with a redirect
to ``/accounts/password_reset/done/``, and sends no mail).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import re
import secrets

from aiohttp import web

PASSWORD = "bench-password"
WRONG_PASSWORD = "not-the-password"
DOMAIN = "bench.test"
_NAME = re.compile(r"[a-z0-9-]{1,64}")
_KEY = secrets.token_bytes(16)


def user_name(identifier: str) -> str | None:
    """The user an identifier names, or None when it names nobody."""
    ident = identifier.strip().lower()
    name = ident.removesuffix("@" + DOMAIN)
    return name if _NAME.fullmatch(name) else None


def profile(name: str) -> dict[str, str]:
    """The legacy profile of user ``name``."""
    return {"id": name, "email": f"{name}@{DOMAIN}", "username": name}


def _sid(name: str) -> str:
    mac = hmac.new(_KEY, name.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{name}.{mac}"


def _sid_user(sid: str) -> str | None:
    name, _, _mac = sid.partition(".")
    return name if name and hmac.compare_digest(sid, _sid(name)) else None


def _check(identifier: str, password: str) -> str | None:
    name = user_name(identifier)
    if name is None or not hmac.compare_digest(password.encode(), PASSWORD.encode()):
        return None
    return name


def _form(inputs: str) -> web.Response:
    """A form page with its CSRF token, in a hidden field and a cookie, as Django's."""
    token = secrets.token_hex(8)
    page = (
        '<form method="post"><input type="hidden" name="csrfmiddlewaretoken"'
        f' value="{token}">{inputs}</form>'
    )
    response = web.Response(text=page, content_type="text/html")
    response.set_cookie("csrftoken", token)
    return response


def create_legacy_app(login_delay: float) -> web.Application:
    """The legacy stub as an aiohttp app; each login takes ``login_delay`` seconds."""

    async def login_page(request: web.Request) -> web.Response:
        return _form('<input name="username"><input type="password" name="password">')

    async def reset_page(request: web.Request) -> web.Response:
        return _form('<input type="email" name="email">')

    async def login_form(request: web.Request) -> web.Response:
        await asyncio.sleep(login_delay)
        form = await request.post()
        if form.get("csrfmiddlewaretoken") != request.cookies.get("csrftoken"):
            return web.Response(status=403, text="CSRF verification failed")
        name = _check(str(form.get("username", "")), str(form.get("password", "")))
        if name is None:
            return web.Response(text="Please enter a correct username and password.")
        response = web.Response(status=302, headers={"Location": str(form.get("next") or "/")})
        response.set_cookie("sessionid", _sid(name), httponly=True)
        return response

    async def login_json(request: web.Request) -> web.Response:
        await asyncio.sleep(login_delay)
        try:
            body = await request.json()
            name = _check(str(body.get("email", "")), str(body.get("password", "")))
        except (ValueError, AttributeError):
            return web.json_response({"ok": False, "error": "bad json"}, status=400)
        if name is None:
            return web.json_response({"ok": False}, status=401)
        return web.json_response({"ok": True, "user": profile(name), "token": "t-" + name})

    async def reset_form(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("csrfmiddlewaretoken") != request.cookies.get("csrftoken"):
            return web.Response(status=403, text="CSRF verification failed")
        return web.Response(status=302, headers={"Location": "/accounts/password_reset/done/"})

    async def lookup(request: web.Request) -> web.Response:
        # The legacy app's internal "get user": authshim's look-up for resets.
        identifier = request.query.get("email") or request.query.get("username") or ""
        name = user_name(identifier)
        if name is None or ("email" in request.query and "@" not in identifier):
            return web.json_response({"detail": "not found"}, status=404)
        return web.json_response(profile(name))

    async def me(request: web.Request) -> web.Response:
        name = _sid_user(request.cookies.get("sessionid", ""))
        if name is None:
            return web.json_response({"detail": "not logged in"}, status=403)
        return web.json_response(profile(name))

    async def page(request: web.Request) -> web.Response:
        who = request.headers.get("X-Forwarded-User", "anonymous")
        return web.Response(text=f"<p>{request.path} for {who}</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/accounts/login/", login_page)
    app.router.add_post("/accounts/login/", login_form)
    app.router.add_post("/api/login", login_json)
    app.router.add_get("/api/me", me)
    app.router.add_get("/accounts/password_reset/", reset_page)
    app.router.add_post("/accounts/password_reset/", reset_form)
    app.router.add_get("/internal/users", lookup)
    app.router.add_route("*", "/{tail:.*}", page)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--login-delay", type=float, default=0.05, help="seconds per login")
    args = parser.parse_args()
    web.run_app(
        create_legacy_app(args.login_delay),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=lambda _: print("ready", flush=True),
        backlog=1024,
    )


if __name__ == "__main__":
    main()
