"""A reset link's story: authshim's page, then the new password set with the token, once.

``GET /.authshim/reset?token=...`` serves a plain HTML page (its look can be replaced by
``reset.template``); ``POST /.authshim/reset`` takes ``token`` and ``password`` (form or JSON).
A migrated user gets the new hash and loses every session; a legacy user the look-up found is
created in the store (source ``reset``) with the profile the token carries. On the legacy
app's own confirm route (``reset.confirm_path``), a token that is not ours is forwarded.
"""

from __future__ import annotations

import html
import string
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.bodies import BodyTooLarge, Submitted, parse_fields, read_body
from proxy.config import Config, ResetConfig
from proxy.errors import BadRequestBody, WeakPassword
from proxy.flows.common import body_format, elapsed_ms, unavailable
from proxy.legacy import map_profile
from proxy.policy import check_password
from proxy.rules.notify import notify
from proxy.services import Services
from proxy.tokens import hash_token, same_hash, well_formed
from store.base import NewUser, ResetToken, User
from store.errors import Overloaded, RejectedCapture, StoreError, UserExists
from store.validation import validate_capture

PAGE_PATH = "/.authshim/reset"
INVALID = "This link is invalid or has expired. Ask for a new one."
_HEADERS = {
    "Cache-Control": "no-store",
    # SECURITY: the token is in the URL: no Referer carries it away, no frame shows the page.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one confirm POST ended: ``error`` is for the client (None on success)."""

    name: str
    error: str | None = None
    user_id: str | None = None
    token: str = ""  # shown again in the form after a mistake the user can fix


@dataclass(frozen=True, slots=True)
class ResetPage:
    """The reset page's template and what it shows, read once at start."""

    template: string.Template
    min_length: int
    max_length: int

    @classmethod
    def load(cls, config: Config) -> ResetPage:
        """The configured template (``reset.template``), or the packaged one."""
        assert config.reset is not None
        if config.reset.template:
            text = Path(config.reset.template).read_text(encoding="utf-8")
        else:
            text = (resources.files("proxy") / "templates" / "reset.html").read_text("utf-8")
        policy = config.policy
        return cls(string.Template(text), policy.min_length, policy.max_length)

    def render(self, token: str, *, error: str | None = None, form: bool = True) -> web.Response:
        """The page for ``token``, with an error message and without the form when asked."""
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = self.template.safe_substitute(
            title="Choose a new password",
            message=message,
            action=PAGE_PATH,
            token=html.escape(token, quote=True),
            form_state="" if form else "hidden",
            min_length=str(self.min_length),
            max_length=str(self.max_length),
        )
        status = 400 if error else 200
        return web.Response(status=status, text=body, content_type="text/html", headers=_HEADERS)


async def page(request: web.Request, svc: Services, view: ResetPage) -> web.StreamResponse:
    """``GET /.authshim/reset?token=...``: the form, or why the link cannot be used."""
    token = request.query.get("token", "")
    try:
        live = await _live(svc, token)
    except StoreError:
        return unavailable("the user store is unavailable")
    svc.counters.add(f"reset.page.{'ok' if live else 'invalid'}")
    log.event("reset.page", outcome="ok" if live else "invalid")
    return view.render(token) if live else view.render("", error=INVALID, form=False)


async def legacy_confirm(
    request: web.Request, svc: Services, view: ResetPage
) -> web.StreamResponse:
    """The legacy confirm route: our token gets our page; any other goes to the legacy app."""
    token = request.query.get("token", "")
    if await _known(svc, token):
        return await page(request, svc, view)
    if svc.cutover:
        log.event("reset.page", outcome="invalid")
        return view.render("", error=INVALID, form=False)
    log.event("reset.page", outcome="forwarded")
    return await svc.forwarder.forward(request)


async def confirm(
    request: web.Request, svc: Services, cfg: ResetConfig, view: ResetPage
) -> web.StreamResponse:
    """``POST /.authshim/reset``: set the new password; log one line."""
    started = time.perf_counter()
    as_json = body_format(request) == "json"
    result = await _confirm(request, svc)
    svc.counters.add(f"reset.confirm.{result.name}")
    if result.error is None:
        response = web.json_response({"ok": True}) if as_json else render(cfg.done)
    elif result.name in ("overloaded", "store_error"):
        response = unavailable(result.error)
    elif as_json:
        response = problem(409 if result.name == "conflict" else 400, result.error)
    else:
        response = view.render(result.token, error=result.error, form=bool(result.token))
    log.event(
        "reset.confirm", outcome=result.name, user=result.user_id, status=response.status,
        ms=elapsed_ms(started),
    )  # fmt: skip
    return response


async def _confirm(request: web.Request, svc: Services) -> Outcome:
    try:
        raw = await read_body(request, svc.config.server.max_body)
        submitted = Submitted(raw, parse_fields(raw, body_format(request), request.content_type))
        token, password = submitted.text("token"), submitted.text("password")
        again = submitted.optional("password2")
    except BodyTooLarge as exc:
        return Outcome("too_large", str(exc))
    except BadRequestBody as exc:
        return Outcome("bad_request", str(exc))
    # The token is still good after these two mistakes, so the form is shown again with it.
    try:
        check_password(password, svc.config.policy)
    except WeakPassword as exc:
        return Outcome("weak_password", str(exc), token=_shown(token))
    if again is not None and again != password:
        return Outcome("mismatch", "the two passwords differ", token=_shown(token))
    try:
        stored = await _live(svc, token)
        if stored is None:
            return Outcome("invalid", INVALID)
        phc = await svc.passwords.hash(password)
        # Used here, once: a second request with the same token finds nothing.
        used = await svc.store.use_reset_token(stored.token_hash, now=time.time())
        if used is None:
            return Outcome("invalid", INVALID)
        return await _apply(svc, used, phc)
    except Overloaded:
        return Outcome("overloaded", "too many password changes at once; retry")
    except StoreError as exc:
        log.event("reset.store_failed", error=type(exc).__name__)
        return Outcome("store_error", "the user store is unavailable")


def _shown(token: str) -> str:
    return token if well_formed(token) else ""


async def _apply(svc: Services, token: ResetToken, phc: str) -> Outcome:
    if token.user_id is not None:
        await svc.store.set_password(token.user_id, phc)  # also ends every session
        await _settled(svc, token.user_id, token.email)
        if (changed := await svc.store.get_user(token.user_id)) is not None:
            notify(svc, "password_changed", changed, "reset", route=PAGE_PATH)
        return Outcome("reset", user_id=token.user_id)
    try:
        fields = validate_capture(
            map_profile(token.profile or {}, svc.config.profile),
            requires_username=svc.config.migration.requires_username,
            username_case=svc.config.migration.username_case,
        )
        new = NewUser(token.email, fields.username, phc, token.profile or {}, fields.legacy_id,
                      "reset")  # fmt: skip
        user = await svc.store.insert_user(new)
    except RejectedCapture as exc:
        return Outcome(f"rejected.{exc.reason}", "this account cannot be migrated; ask for help")
    except UserExists:
        # Captured by a login since the mail went out: the mailbox's owner is this user.
        user_or_none = await svc.store.find_user(token.email)
        if user_or_none is None or user_or_none.email != token.email:
            return Outcome("conflict", "another account holds this email or username")
        user = user_or_none
        await svc.store.set_password(user.id, phc)
    await _settled(svc, user.id, user.email)
    notify(svc, "migrated", user, "reset", route=PAGE_PATH)
    return Outcome("migrated", user_id=user.id)


async def _settled(svc: Services, user_id: str, email: str | None) -> None:
    """After a reset: forget the cached user and lift the login limits the user may have hit."""
    svc.sessions.forget(user_id)
    user: User | None = await svc.store.get_user(user_id)
    try:
        await svc.limits.clear_user([email, user.username if user else None], user_id=user_id)
    except StoreError as exc:
        log.event("reset.limits_clear_failed", error=type(exc).__name__)


async def _known(svc: Services, token: str) -> bool:
    """Whether ``token`` is one of ours, live or not."""
    if not well_formed(token):
        return False
    try:
        return await svc.store.find_reset_token(hash_token(token)) is not None
    except StoreError:
        return False


async def _live(svc: Services, token: str) -> ResetToken | None:
    """The stored token ``token`` names, if it is unused, unexpired and its user unchanged."""
    if not well_formed(token):
        return None
    stored = await svc.store.find_reset_token(hash_token(token))
    if stored is None or not same_hash(stored.token_hash, token):
        return None
    if stored.used_at is not None or stored.expires_at <= time.time():
        return None
    if stored.user_id is not None:
        user = await svc.store.get_user(stored.user_id)
        # SECURITY: a password change by any route bumps the epoch and so retires the token.
        if user is None or user.blocked or user.session_epoch != stored.epoch:
            return None
    return stored
