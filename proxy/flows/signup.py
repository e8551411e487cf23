"""A sign-up's story: nobody may sign up under an email or username that exists anywhere.

``handler = "local"``: authshim checks the input (a username is never an email address: no
``@``), then each of the new email and username against both columns of its store and both
legacy look-ups (by email, by username); a user who exists anywhere gets the conflict answer,
anyone else is created (source ``signup``) and answered like a login, with a session. The
look-up is asked in both modes (``signup.legacy_check = "always"``, since the legacy app still
trusts identity headers after cut-over) or in mode ``migrate`` only (``"migrate"``); when it
should be asked and cannot be, nobody is created (503).
``handler = "upstream"``: the same username rule, the store and the cross look-ups (the new
email as a legacy username, the new username as a legacy email: the legacy app checks its own
columns) guard the forward; the legacy app signs the user up and authshim captures the user
when it accepts, as at a login. In cut-over the legacy app is never asked to sign anyone up:
sign-up is local.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.config import SignupConfig
from proxy.errors import (
    BadRequestBody,
    LookupFailed,
    Throttled,
    WeakPassword,
)
from proxy.flows.capture import Result, capture_user, forward_and_capture
from proxy.flows.common import (
    Read,
    Refusal,
    elapsed_ms,
    forward_read,
    put_pointer,
    read_route,
    unavailable,
)
from proxy.forward import UpstreamAnswer
from proxy.legacy import fetch_profile
from proxy.limits import client_ip, throttled_answer
from proxy.policy import check_password
from proxy.reading import Reading
from proxy.rules.hooks import on_signup
from proxy.services import Services
from store.base import NewUser, User
from store.errors import Overloaded, RejectedCapture, StoreError, UserExists
from store.validation import (
    ProfileFields,
    normalise_identifier,
    validate_capture,
)

LOOKUP_FAILED = "cannot check the legacy site for an existing account now; retry"


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
    names = (cfg.email, cfg.password, *((cfg.username,) if cfg.username else ()))
    try:
        read = await read_route(request, svc, path=cfg.path, fmt=cfg.format, credentials=names)
    except Refusal as refused:
        return refused.outcome, refused.response, None
    if cfg.handler == "upstream" and not svc.cutover:
        return await _upstream(request, svc, cfg, read)
    return await _local(request, svc, cfg, read)


async def _local(request: web.Request, svc: Services, cfg: SignupConfig, read: Read) -> Result:
    """Check the sign-up everywhere and create the user here."""
    try:
        if (submitted := read.reading) is None:
            raise BadRequestBody(read.unread)
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
            username_case=svc.config.migration.username_case,
        )
        _check_username(fields.username)
        check_password(password, svc.config.policy)
    except RejectedCapture as exc:
        return "invalid", problem(400, _explain(exc)), None
    except WeakPassword as exc:
        return "weak_password", problem(400, str(exc)), None
    try:
        taken = await _taken(svc, fields, _legacy_checks(svc, cfg, fields))
        if taken:
            return f"conflict.{taken}", render(cfg.conflict), None
        phc = await svc.passwords.hash(password)
        profile = _profile(svc, submitted, cfg, email.strip(), (username or "").strip() or None)
        profile, denied = await on_signup(request, svc, cfg.path, fields, profile)
        if denied is not None:
            return "rule_denied", problem(403, denied), None  # the operator's rules (issue 16)
        user = await svc.store.insert_user(
            NewUser(fields.email, fields.username, phc, profile, None, "signup")
        )
    except UserExists:  # signed up (or captured) a moment ago by a concurrent request
        return "conflict.store", render(cfg.conflict), None
    except RejectedCapture as exc:  # a profile JSON cannot hold (lone surrogates)
        return "invalid", problem(400, _explain(exc)), None
    except LookupFailed:
        # SECURITY: a look-up that failed is no "not found": no user is created on a guess.
        return "lookup_error", unavailable(LOOKUP_FAILED), None
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


def _check_username(username: str | None) -> None:
    """Refuse a username that could be taken for an email address.

    Raises:
        RejectedCapture: ``bad_username``, the (normalised) username holds an ``@``.
    """
    # SECURITY: the store and the login find a user by email or username alike, so a username
    # equal to somebody's email would catch their logins and their reset mail.
    if username and "@" in username:
        raise RejectedCapture("bad_username", "must not contain @ (an email address)")


# Which legacy look-up to ask about which value: ("email", v) asks by_email, ("username", v)
# asks by_username.
Checks = list[tuple[str, str]]


def _legacy_checks(svc: Services, cfg: SignupConfig, fields: ProfileFields) -> Checks | None:
    """Every value against both legacy look-ups, or None when the legacy app is not asked
    (cut-over with ``signup.legacy_check = "migrate"``)."""
    if svc.cutover and cfg.legacy_check != "always":
        return None
    values = [value for value in (fields.email, fields.username) if value]
    return [(kind, value) for value in values for kind in ("email", "username")]


async def _taken(svc: Services, fields: ProfileFields, checks: Checks | None) -> str | None:
    """Where the email or username already exists (``store`` or ``legacy``), else None.

    Each value is looked up in the store (either column, normalised), then ``checks`` in the
    legacy look-ups that are configured.

    Raises:
        LookupFailed: the legacy look-up should be asked and failed or is not configured.
    """
    for value in (fields.email, fields.username):
        if value and await svc.store.find_user(value) is not None:
            return "store"
    if checks is None:
        return None
    lookup = svc.lookup
    if lookup is None:
        # SECURITY: without the look-up nobody can tell this name is not a legacy user's.
        raise LookupFailed("no [lookup] is configured to check the legacy app")
    for kind, value in checks:
        if kind == "email" and lookup.by_email_enabled and await lookup.by_email(value):
            return "legacy"
        if kind == "username" and lookup.by_username_enabled and await lookup.by_username(value):
            return "legacy"
    return None


def _profile(
    svc: Services, submitted: Reading, cfg: SignupConfig, email: str, username: str | None
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


async def _upstream(request: web.Request, svc: Services, cfg: SignupConfig, read: Read) -> Result:
    """Forward to the legacy sign-up; capture the user when the legacy app accepts."""
    assert cfg.success is not None and cfg.profile is not None  # the config requires them
    try:
        if (submitted := read.reading) is None:
            raise BadRequestBody(read.unread)
        email = normalise_identifier(submitted.text(cfg.email))
        password = submitted.text(cfg.password)
        username = submitted.optional(cfg.username) if cfg.username else None
    except BadRequestBody:
        # Names no credential any framework would read: the legacy app's business.
        return "forwarded_unread", await forward_read(request, svc, read), None
    case = svc.config.migration.username_case
    fields = ProfileFields(None, email or None, normalise_identifier(username or "", case) or None)
    try:
        _check_username(fields.username)
    except RejectedCapture as exc:
        return "invalid", problem(400, _explain(exc)), None
    # The legacy app checks its own columns; what it cannot see is a stored user, and its own
    # users across the columns (the new email as a username, the new username as an email).
    cross = [("username", fields.email), ("email", fields.username)]
    checks = [(kind, value) for kind, value in cross if value] if svc.lookup else None
    try:
        taken = await _taken(svc, fields, checks)
    except LookupFailed:
        return "lookup_error", unavailable(LOOKUP_FAILED), None
    except StoreError:
        return "store_error", unavailable("the user store is unavailable"), None
    if taken:
        return f"conflict.{taken}", render(cfg.conflict), None
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

    return await forward_and_capture(
        request, svc, raw=submitted.body, target=read.target, success=cfg.success,
        capture=capture,
    )  # fmt: skip
