"""A sign-up's story: nobody may sign up under an email or username that exists anywhere.

``handler = "local"``: authshim checks the input, its store and (mode ``migrate``) the legacy
look-up by email and by username; a user who exists anywhere gets the conflict answer, anyone
else is created (source ``signup``) and answered like a login, with a session.
``handler = "upstream"``: the legacy app signs the user up and authshim captures the user when
it accepts, as at a login. In cut-over the legacy app is never asked: sign-up is local.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.bodies import Submitted, parse_fields
from proxy.config import SignupConfig
from proxy.errors import (
    BadRequestBody,
    LookupFailed,
    Throttled,
    WeakPassword,
)
from proxy.flows.capture import Result, capture_user, forward_and_capture
from proxy.flows.common import (
    Refusal,
    elapsed_ms,
    forward_raw,
    put_pointer,
    read_intercepted,
    unavailable,
)
from proxy.forward import UpstreamAnswer
from proxy.legacy import fetch_profile
from proxy.limits import client_ip, throttled_answer
from proxy.policy import check_password
from proxy.services import Services
from store.base import NewUser, User
from store.errors import Overloaded, RejectedCapture, StoreError, UserExists
from store.validation import (
    ProfileFields,
    normalise_identifier,
    validate_capture,
)


async def handle(request: web.Request, svc: Services, cfg: SignupConfig) -> web.StreamResponse:
    """Answer one sign-up POST and log one line about it."""
    started = time.perf_counter()
    outcome, response, user_id = await _signup(request, svc, cfg)
    svc.counters.add(f"signup.{outcome}")
    log.event(
        "signup", route=cfg.path, handler=cfg.handler, outcome=outcome, user=user_id,
        status=response.status, ms=elapsed_ms(started),
    )  # fmt: skip
    return response


async def _signup(request: web.Request, svc: Services, cfg: SignupConfig) -> Result:
    try:
        raw = await read_intercepted(request, svc, cfg.format)
    except Refusal as refused:
        return refused.outcome, refused.response, None
    if cfg.handler == "upstream" and not svc.cutover:
        return await _upstream(request, svc, cfg, raw)
    try:
        submitted = Submitted(raw, parse_fields(raw, cfg.format, request.content_type))
        email, password = submitted.text(cfg.email), submitted.text(cfg.password)
        username = submitted.optional(cfg.username) if cfg.username else None
    except BadRequestBody as exc:
        return "bad_request", problem(400, str(exc)), None
    try:
        await svc.limits.check("signup", ip=client_ip(request, svc.config.server.trusted_proxies),
                               address=normalise_identifier(email))  # fmt: skip
    except Throttled as exc:
        return "throttled", throttled_answer(exc), None
    except StoreError:
        pass  # the limits are a guard, not a gate
    try:
        fields = validate_capture(
            ProfileFields(None, email, username),
            requires_username=svc.config.migration.requires_username,
        )
        check_password(password, svc.config.policy)
    except RejectedCapture as exc:
        return "invalid", problem(400, _explain(exc)), None
    except WeakPassword as exc:
        return "weak_password", problem(400, str(exc)), None
    try:
        taken = await _taken(svc, fields)
        if taken:
            return f"conflict.{taken}", render(cfg.conflict), None
        phc = await svc.passwords.hash(password)
        profile = _profile(svc, submitted, cfg, email.strip(), (username or "").strip() or None)
        user = await svc.store.insert_user(
            NewUser(fields.email, fields.username, phc, profile, None, "signup")
        )
    except UserExists:  # signed up (or captured) a moment ago by a concurrent request
        return "conflict.store", render(cfg.conflict), None
    except RejectedCapture as exc:  # a profile JSON cannot hold (lone surrogates)
        return "invalid", problem(400, _explain(exc)), None
    except LookupFailed:
        # SECURITY: a look-up that failed is no "not found": no user is created on a guess.
        message = "cannot check the legacy site for an existing account now; retry"
        return "lookup_error", unavailable(message), None
    except Overloaded:
        return "overloaded", unavailable("too many sign-ups at once; retry"), None
    except StoreError:
        return "store_error", unavailable("the user store is unavailable"), None
    answer = render(cfg.answer, profile=user.profile, cookies=[svc.sessions.issue(user)])
    return "created", answer, user.id


def _explain(exc: RejectedCapture) -> str:
    if exc.reason in ("no_email", "no_username"):
        return f"the {exc.reason.removeprefix('no_')} is required"
    if exc.reason in ("bad_email", "bad_username"):
        return f"the {exc.reason.removeprefix('bad_')} is not valid: {exc.detail}"
    return "the submitted fields cannot be stored"


async def _taken(svc: Services, fields: ProfileFields) -> str | None:
    """Where the email or username already exists (``store`` or ``legacy``), else None.

    Raises:
        LookupFailed: mode migrate, and the legacy look-up failed or is not configured.
    """
    for value in (fields.email, fields.username):
        if value and await svc.store.find_user(value) is not None:
            return "store"
    if svc.cutover:
        return None
    lookup = svc.lookup
    if lookup is None:
        raise LookupFailed("no [lookup] is configured to check the legacy app")
    if fields.email and lookup.by_email_enabled and await lookup.by_email(fields.email):
        return "legacy"
    if fields.username and lookup.by_username_enabled and await lookup.by_username(fields.username):
        return "legacy"
    return None


def _profile(
    svc: Services, submitted: Submitted, cfg: SignupConfig, email: str, username: str | None
) -> dict[str, Any]:
    """The stored profile: the allowed extra fields, then email and username where
    ``[profile]`` points, as typed."""
    profile: dict[str, Any] = {}
    for name in cfg.fields:
        value = submitted.optional(name)
        if value is not None:
            profile[name] = value
    profile = put_pointer(profile, svc.config.profile.email, email)
    if username:
        profile = put_pointer(profile, svc.config.profile.username, username)
    return profile


async def _upstream(request: web.Request, svc: Services, cfg: SignupConfig, raw: bytes) -> Result:
    """Forward to the legacy sign-up; capture the user when the legacy app accepts."""
    assert cfg.success is not None and cfg.profile is not None  # the config requires them
    try:
        submitted = Submitted(raw, parse_fields(raw, cfg.format, request.content_type))
        email = normalise_identifier(submitted.text(cfg.email))
        password = submitted.text(cfg.password)
    except BadRequestBody:
        return "forwarded_unread", await forward_raw(request, svc, raw), None
    profile_source = cfg.profile

    async def capture(answer: UpstreamAnswer) -> User | None:
        return await capture_user(
            svc,
            path=cfg.path,
            identifier=email,
            password=password,
            source="signup",
            profile=lambda: fetch_profile(svc.forwarder, profile_source, answer, request.headers),
            # SECURITY: signing up with a stored user's email never logs in as that user.
            reuse_existing=False,
            validate=True,
        )

    return await forward_and_capture(request, svc, raw=raw, success=cfg.success, capture=capture)
