"""The "choose a new password" step: a user flagged to change their password (by a rule, the
admin API or the capture policy) gets it instead of a session when the password was right.

A form login answers with the page (the reset page's look); a JSON login with 403 and
``{"error", "challenge": "new_password_required", "token", "url"}``. ``POST`` to ``url`` with
``token``, ``password`` (and ``password2``), form or JSON, sets the new password, clears the
flag, ends the user's other sessions and gives the login route's own answer with a session.

The token is stateless: HMAC-signed (a key derived from the session secret) user id, session
epoch, login route, ``next`` and expiry. The new password bumps the epoch, so a token works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import string
import time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.bodies import Submitted, parse_fields
from proxy.config import Config, LoginRoute
from proxy.errors import BadRequestBody, WeakPassword
from proxy.flows.common import Refusal, body_format, elapsed_ms, read_intercepted, unavailable
from proxy.policy import check_password
from proxy.rules.notify import notify
from proxy.services import Services
from proxy.sessions import set_cookie
from store.base import User
from store.errors import InvalidPassword, Overloaded, StoreError

PAGE_PATH = "/.authshim/change-password"
FLAG = "must_change_password"  # in the profile's app_metadata
TOKEN_LIFETIME = 600.0
INVALID = "This step has expired. Log in again."
SAME = "Choose a password other than your current one."
BREACHED = "This password is on a list of leaked passwords; choose another."
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def flagged(profile: dict[str, Any]) -> bool:
    """Whether the stored profile says the password must be changed at the next login."""
    metadata = profile.get("app_metadata")
    return isinstance(metadata, dict) and metadata.get(FLAG) is True


def with_flag(profile: dict[str, Any], on: bool) -> dict[str, Any]:
    """A copy of ``profile`` with the flag set (or removed)."""
    metadata = profile.get("app_metadata")
    base = dict(metadata) if isinstance(metadata, dict) else {}
    if on:
        base[FLAG] = True
    else:
        base.pop(FLAG, None)
    return {**profile, "app_metadata": base}


def challenge(
    svc: Services, route: LoginRoute, user: User, next_value: str | None
) -> web.Response:
    """The answer to a right password of a flagged user: the step, not a session."""
    index = svc.config.logins.index(route)
    token = _codec(svc).issue(user.id, user.session_epoch, index, next_value or "")
    if route.format == "json":
        body = {"error": "a new password must be chosen", "challenge": "new_password_required",
                "token": token, "url": PAGE_PATH}  # fmt: skip
        return web.json_response(body, status=403, headers={"Cache-Control": "no-store"})
    return _page(svc.config, token)


async def handle(request: web.Request, svc: Services) -> web.StreamResponse:
    """``POST /.authshim/change-password``: set the new password; log one line."""
    started = time.perf_counter()
    as_json = body_format(request) == "json"
    outcome, response, user_id = await _change(request, svc, as_json)
    svc.counters.add(f"must_change.{outcome}")
    log.event("must_change", outcome=outcome, user=user_id, status=response.status,
              ms=elapsed_ms(started))  # fmt: skip
    return response


async def _change(
    request: web.Request, svc: Services, as_json: bool
) -> tuple[str, web.StreamResponse, str | None]:
    def mistake(outcome: str, message: str, token: str) -> tuple[str, web.Response, None]:
        shown = problem(400, message) if as_json else _page(svc.config, token, error=message)
        return outcome, shown, None

    try:
        raw = await read_intercepted(request, svc, "json" if as_json else "form")
        submitted = Submitted(raw, parse_fields(raw, body_format(request), request.content_type))
        token, password = submitted.text("token"), submitted.text("password")
        again = submitted.optional("password2")
    except Refusal as refused:
        return refused.outcome, refused.response, None
    except BadRequestBody as exc:
        return "bad_request", problem(400, str(exc)), None
    claims = _codec(svc).verify(token)
    if claims is None:
        return mistake("invalid", INVALID, "")
    try:
        check_password(password, svc.config.policy)
        if svc.weak.breached(password):
            raise WeakPassword(BREACHED)
    except WeakPassword as exc:
        return mistake("weak_password", str(exc), token)
    if again is not None and again != password:
        return mistake("mismatch", "the two passwords differ", token)
    try:
        user = await svc.store.get_user(claims["u"])
        # SECURITY: a password set since (this step, a reset, a change) retires the token.
        if user is None or user.blocked or user.session_epoch != claims["e"]:
            return mistake("invalid", INVALID, "")
        if await _same(svc, user, password):
            return mistake("same_password", SAME, token)
        phc = await svc.passwords.hash(password)
        epoch = await svc.store.set_password(user.id, phc)  # ends every other session
        if flagged(user.profile):
            user = await svc.store.update_profile(user.id, with_flag(user.profile, False))
    except Overloaded:
        return "overloaded", unavailable("too many password changes at once; retry"), None
    except StoreError:
        return "store_error", unavailable("the user store is unavailable"), None
    svc.sessions.forget(user.id)
    notify(svc, "password_changed", user, "local", request=request)
    cookie = set_cookie(svc.config.session, svc.sessions.codec.issue(user.id, epoch))
    route = svc.config.logins[min(claims["r"], len(svc.config.logins) - 1)]
    answer = render(route.answer, next_value=claims["n"] or None, profile=user.profile,
                    cookies=[cookie])  # fmt: skip
    return "changed", answer, user.id


async def _same(svc: Services, user: User, password: str) -> bool:
    try:
        await svc.passwords.verify(user.password_hash, password)
    except InvalidPassword:
        return False
    return True


def _page(config: Config, token: str, *, error: str | None = None) -> web.Response:
    template = _template(config.reset.template if config.reset else None)
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = template.safe_substitute(
        title="Choose a new password", message=message, action=PAGE_PATH,
        token=html.escape(token, quote=True), form_state="" if token else "hidden",
        min_length=str(config.policy.min_length), max_length=str(config.policy.max_length),
    )  # fmt: skip
    # 403 on the login: a client that does not know the step must not take it for a success.
    status = 400 if error else 403
    return web.Response(status=status, text=body, content_type="text/html", headers=_HEADERS)


@lru_cache(maxsize=4)
def _template(path: str | None) -> string.Template:
    """The reset page's template (``reset.template`` or the packaged one), read once."""
    if path:
        return string.Template(Path(path).read_text(encoding="utf-8"))
    return string.Template((resources.files("proxy") / "templates" / "reset.html").read_text())


class _Codec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"authshim-must-change\x00" + secret.encode()).digest()

    def issue(self, user_id: str, epoch: int, route: int, next_value: str) -> str:
        payload = orjson.dumps({"u": user_id, "e": epoch, "r": route, "n": next_value,
                                "x": time.time() + TOKEN_LIFETIME})  # fmt: skip
        return f"{_b64(payload)}.{_b64(hmac.new(self._key, payload, 'sha256').digest())}"

    def verify(self, token: str) -> dict[str, Any] | None:
        body, _, sig = token.partition(".")
        try:
            payload, signature = _unb64(body), _unb64(sig)
        except ValueError:
            return None
        expected = hmac.new(self._key, payload, "sha256").digest()
        if not hmac.compare_digest(signature, expected):  # SECURITY: constant time
            return None
        try:
            claims = orjson.loads(payload)
            ok = (isinstance(claims["u"], str) and isinstance(claims["e"], int)
                  and isinstance(claims["r"], int) and isinstance(claims["n"], str))  # fmt: skip
            live = float(claims["x"]) > time.time()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return claims if ok and live else None


@lru_cache(maxsize=4)
def _codec_for(secret: str) -> _Codec:
    return _Codec(secret)


def _codec(svc: Services) -> _Codec:
    return _codec_for(svc.config.session.secret.value)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
