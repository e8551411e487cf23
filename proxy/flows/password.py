"""A password change's story: a migrated user with a session changes it here; others are
forwarded to the legacy app.

authshim checks the old password (argon2), applies the policy to the new one, stores its hash
and bumps the session epoch, which ends every session of the user (and retires their reset
tokens); the client that asked gets a fresh session, so only the other sessions end.
"""

from __future__ import annotations

import time

from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.config import PasswordChangeConfig
from proxy.errors import BadRequestBody, Throttled, WeakPassword
from proxy.flows.common import (
    Refusal,
    elapsed_ms,
    forward_read,
    read_route,
    session_user,
    unavailable,
)
from proxy.limits import client_ip, throttled_answer
from proxy.policy import check_password
from proxy.rules.notify import notify
from proxy.services import Services
from proxy.sessions import set_cookie
from store.base import User
from store.errors import InvalidPassword, Overloaded, StoreError

Result = tuple[str, web.StreamResponse, str | None]


async def handle(
    request: web.Request, svc: Services, cfg: PasswordChangeConfig
) -> web.StreamResponse:
    """Answer one password-change POST and log one line about it."""
    started = time.perf_counter()
    outcome, response, user_id = await _change(request, svc, cfg)
    svc.counters.add(f"password_change.{outcome}")
    log.event(
        "password_change", route=cfg.path, outcome=outcome, user=user_id,
        status=response.status, ms=elapsed_ms(started),
    )  # fmt: skip
    return response


async def _change(request: web.Request, svc: Services, cfg: PasswordChangeConfig) -> Result:
    names = (*((cfg.old,) if cfg.old else ()), cfg.new, *((cfg.confirm,) if cfg.confirm else ()))
    try:
        read = await read_route(request, svc, path=cfg.path, fmt=cfg.format, credentials=names)
    except Refusal as refused:
        return refused.outcome, refused.response, None
    user = await session_user(request, svc)
    if user is None:
        if svc.cutover:
            return "no_session", render(cfg.failure), None
        # Not migrated (or not logged in through authshim): the legacy app's business.
        return "forwarded", await forward_read(request, svc, read), None
    try:
        if (submitted := read.reading) is None:
            raise BadRequestBody(read.unread)
        old = submitted.optional(cfg.old) if cfg.old else None
        new = submitted.text(cfg.new)
        again = submitted.text(cfg.confirm) if cfg.confirm else new
        check_password(new, svc.config.policy)
        if again != new:
            raise BadRequestBody("the two new passwords differ")
        if old is None and not _fresh(request, svc, cfg):
            # SECURITY: without the old password only a session just proven by a login may
            # change it (a stolen, older session may not).
            raise BadRequestBody("the old password is required (or a login of the last "
                                 f"{round(cfg.fresh)} s)")  # fmt: skip
    except (BadRequestBody, WeakPassword) as exc:
        return "bad_request", problem(400, str(exc)), user.id
    if old is not None and (wrong := await _check_old(request, svc, cfg, user, old)):
        return wrong
    try:
        phc = await svc.passwords.hash(new)
        epoch = await svc.store.set_password(user.id, phc)  # ends every session, this one too
    except Overloaded:
        return "overloaded", unavailable("too many password changes at once; retry"), user.id
    except StoreError:
        return "store_error", unavailable("the user store is unavailable"), user.id
    svc.sessions.forget(user.id)
    notify(svc, "password_changed", user, "local", request=request, route=cfg.path)
    # The client that changed it keeps going on a session of the new epoch.
    cookie = set_cookie(svc.config.session, svc.sessions.codec.issue(user.id, epoch))
    if cfg.forward and submitted is not None:
        # The legacy app changes it too (its own form, its own answer): both sides agree.
        identity = svc.identity(user)
        response = await svc.forwarder.forward(
            request, body=submitted.body, identity=identity, target=read.target, cookies=[cookie]
        )
        return "changed", response, user.id
    return "changed", render(cfg.answer, cookies=[cookie]), user.id


def _fresh(request: web.Request, svc: Services, cfg: PasswordChangeConfig) -> bool:
    """Whether the request's session was issued (by a login) within ``cfg.fresh``."""
    if cfg.fresh <= 0:
        return False
    claims = svc.sessions.codec.verify(request.cookies.get(svc.config.session.cookie, ""))
    if claims is None:
        return False
    issued = claims.expires - svc.sessions.codec.max_age
    return time.time() - issued <= cfg.fresh


async def _check_old(
    request: web.Request, svc: Services, cfg: PasswordChangeConfig, user: User, old: str
) -> Result | None:
    """None when ``old`` is the user's password, else the outcome and answer to give."""
    # SECURITY: the old-password check is a password oracle too: the login limits count it,
    # on the same account (and address) as the user's logins.
    ip = client_ip(request, svc.config.server.trusted_proxies)
    try:
        ticket = await svc.limits.login_attempt(user.email or user.id, ip, user_id=user.id)
    except Throttled as exc:
        return "throttled", throttled_answer(exc), user.id
    try:
        await svc.passwords.verify(user.password_hash, old)
    except InvalidPassword:
        return "wrong_password", render(cfg.failure), user.id
    except Overloaded:
        svc.limits.login_unjudged(ticket)
        return "overloaded", unavailable("too many password changes at once; retry"), user.id
    svc.limits.login_succeeded(ticket)
    return None
