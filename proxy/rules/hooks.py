"""The one call per event the flows make: ``on_login`` (after the password is judged right,
before the answer), ``on_capture`` (before a captured or legacy-signed-up user is stored),
``on_signup`` (before a local sign-up is stored); ``notify`` is in proxy/rules/notify.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from proxy import log
from proxy.config import LoginRoute
from proxy.flows.failure import failure_answer
from proxy.flows.must_change import challenge, flagged, with_flag
from proxy.limits import client_ip
from proxy.reading import Reading
from proxy.rules.answers import merged_metadata
from proxy.rules.context import build_context, pending_context, user_context
from proxy.services import Services
from store.base import User
from store.errors import RejectedCapture, StoreError
from store.validation import ProfileFields

Result = tuple[str, web.StreamResponse, str | None]


async def on_login(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    user: User,
    auth: str,
    reading: Reading,
    target: str,
    hold: Callable[[], Awaitable[None]],
) -> Result | None:
    """None to let the login answer as it would; else the rules' deny (the route's failure
    answer) or the must-change-password step."""
    engine = svc.rules
    must = flagged(user.profile)
    if engine is None or not engine.has("login"):
        if not must:
            return None  # the common case: no rule, no flag, no work
        return "must_change", challenge(svc, route, user, _next_value(reading, route)), user.id
    ip = client_ip(request, svc.config.server.trusted_proxies)
    context = build_context(
        "login", auth, user_context(user), client=ip, route=route.path, mode=svc.modes.current
    )
    verdict = await engine.run("login", context)
    engine.remember(user.id, verdict)
    if verdict.denied:
        # SECURITY: a denied login looks like a wrong password, at the same pace: the rule's
        # message goes to the log, not to whoever typed the password.
        failed = await failure_answer(request, svc, route, reading, target, hold)
        await hold()
        return "rule_denied", failed, user.id
    must_now = verdict.must_change_password and not must
    if verdict.app_metadata or must_now:
        profile = merged_metadata(user.profile, verdict.app_metadata)
        user = await _store_profile(svc, user, with_flag(profile, True) if must_now else profile)
    if must or verdict.must_change_password:
        return "must_change", challenge(svc, route, user, _next_value(reading, route)), user.id
    return None


async def on_capture(
    svc: Services,
    *,
    source: str,
    fields: ProfileFields,
    profile: dict[str, Any],
    password: str,
) -> dict[str, Any]:
    """The profile to store for a user the legacy app accepted: the capture policy's flag, the
    ``capture`` rules (``signup`` for a sign-up the legacy app handled) applied.

    Raises:
        RejectedCapture: ``rule_denied``: a rule refused the user (not stored).
    """
    # SECURITY: judged here, while the password is at hand; only the flag is kept.
    if svc.weak.active and (why := svc.weak.weak(password)) is not None:
        svc.counters.add(f"capture.weak_password.{why}")
        profile = with_flag(profile, True)
    event = "signup" if source == "signup" else "capture"
    engine = svc.rules
    if engine is None or not engine.has(event):
        return profile
    user = pending_context(email=fields.email, username=fields.username,
                           legacy_id=fields.legacy_id, profile=profile, source=source)  # fmt: skip
    auth = "signup" if source == "signup" else "captured"
    context = build_context(event, auth, user, client=None, route=None, mode=svc.modes.current)
    verdict = await engine.run(event, context)
    if verdict.denied:
        raise RejectedCapture("rule_denied")
    return _applied(profile, verdict.profile, verdict.app_metadata, verdict.must_change_password)


async def on_signup(
    request: web.Request, svc: Services, path: str, fields: ProfileFields, profile: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The profile to store for a local sign-up and, when a rule denies it, its message."""
    engine = svc.rules
    if engine is None or not engine.has("signup"):
        return profile, None
    user = pending_context(email=fields.email, username=fields.username, legacy_id=None,
                           profile=profile, source="signup")  # fmt: skip
    ip = client_ip(request, svc.config.server.trusted_proxies)
    context = build_context("signup", "signup", user, client=ip, route=path,
                            mode=svc.modes.current)  # fmt: skip
    verdict = await engine.run("signup", context)
    if verdict.denied:
        return profile, verdict.message or "this sign-up is not allowed"
    must = verdict.must_change_password
    return _applied(profile, verdict.profile, verdict.app_metadata, must), None


def _applied(
    profile: dict[str, Any], replaced: dict[str, Any] | None, metadata: dict[str, Any], must: bool
) -> dict[str, Any]:
    if replaced is not None:
        # The authshim flag survives a rule's new profile: only a password change lifts it.
        replaced = with_flag(replaced, True) if flagged(profile) else replaced
    result = merged_metadata(replaced if replaced is not None else profile, metadata)
    return with_flag(result, True) if must else result


async def _store_profile(svc: Services, user: User, profile: dict[str, Any]) -> User:
    try:
        stored = await svc.store.update_profile(user.id, profile)
    except StoreError as exc:
        log.event("rules.profile_write_failed", user=user.id, error=type(exc).__name__)
        return user
    svc.sessions.forget(user.id)
    return stored


def _next_value(reading: Reading, route: LoginRoute) -> str | None:
    name = route.answer.next_param
    if not name:
        return None
    return dict(parse_qsl(reading.query)).get(name) or reading.optional(name)
