"""A login request's story: answered from the store, or forwarded and captured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.bodies import Submitted, parse_fields
from proxy.config import LoginRoute
from proxy.errors import (
    AmbiguousBody,
    BadRequestBody,
    LookupFailed,
    ProfileError,
    Throttled,
    UpstreamError,
)
from proxy.flows.capture import Result, capture_user, forward_and_capture
from proxy.flows.common import (
    Refusal,
    forward_raw,
    read_intercepted,
    session_user,
    unavailable,
)
from proxy.flows.identity import schedule_refresh
from proxy.forward import UpstreamAnswer, upstream_failure
from proxy.guards import unambiguous
from proxy.legacy import fetch_profile, judge
from proxy.limits import client_ip, throttled_answer
from proxy.services import Services
from store.base import User
from store.errors import (
    InvalidPassword,
    Overloaded,
    StoreError,
    StoreUnavailable,
)
from store.validation import (
    normalise_identifier,
)

# Outcomes that settle the counted attempt: a right password, or nobody judged it at all.
SUCCEEDED = frozenset(
    {"local_ok", "rehashed", "captured", "legacy_ok", "forwarded_unread_ok", "legacy_step"}
)
UNJUDGED = frozenset({"upstream_error", "overloaded", "store_error"})
OVERLOADED = "too many logins at once; retry"
UNREADABLE = "\x00unreadable"  # the account that bodies authshim cannot read are counted on


async def handle(request: web.Request, svc: Services, route: LoginRoute) -> web.StreamResponse:
    """Answer one login POST and log one line about it."""
    started = time.perf_counter()
    outcome, response, user_id = await _login(request, svc, route)
    if outcome in ("local_ok", "rehashed") and user_id is not None:
        schedule_refresh(svc, user_id)  # profile.refresh_on_login (reset/sign-up issue)
    svc.counters.add(f"login.{outcome}")
    log.event(
        "login",
        route=route.path,
        outcome=outcome,
        user=user_id,
        status=response.status,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return response


async def _login(
    request: web.Request, svc: Services, route: LoginRoute
) -> tuple[str, web.StreamResponse, str | None]:
    server = svc.config.server
    try:
        # SECURITY: a form login from another site is login CSRF (the attacker's account).
        raw = await read_intercepted(request, svc, route.format)
    except Refusal as refused:
        return refused.outcome, refused.response, None
    ip = client_ip(request, server.trusted_proxies)
    try:
        submitted = Submitted(raw, parse_fields(raw, route.format, request.content_type))
        # SECURITY: a repeated credential could be read as another user by the legacy app.
        unambiguous(raw, route.format, (route.identifier, route.password))
        identifier = normalise_identifier(submitted.text(route.identifier))
        password = submitted.text(route.password)
        if not identifier or not password:
            raise BadRequestBody("the identifier and the password must not be empty")
    except AmbiguousBody as exc:
        return "ambiguous", problem(400, str(exc)), None
    except BadRequestBody as exc:
        if svc.cutover:
            return "bad_request", problem(400, str(exc)), None
        # The legacy app answers a body authshim cannot read, exactly as it did before, but
        # SECURITY: under limits of its own, or such bodies would be a way around them.
        return await _limited(
            svc, UNREADABLE, ip, lambda: _forward_unread(request, svc, route, raw)
        )
    if svc.passwords.saturated:
        # Shed before any store or limit work: under overload a 503 must cost next to nothing.
        return "overloaded", unavailable(OVERLOADED), None
    return await _limited(
        svc, identifier, ip, lambda: _judge(request, svc, route, submitted, identifier, password)
    )


async def _limited(
    svc: Services, identifier: str, ip: str, judged: Callable[[], Awaitable[Result]]
) -> Result:
    """Count the attempt before any argon2 or legacy work, then settle it by its outcome."""
    try:
        # With the store down this still counts, in this process (see proxy/limits.py).
        ticket = await svc.limits.login_attempt(identifier, ip)
    except Throttled as exc:
        return "throttled", throttled_answer(exc), None
    result = await judged()
    if result[0] in SUCCEEDED:
        svc.limits.login_succeeded(ticket)
    elif result[0] in UNJUDGED:
        svc.limits.login_unjudged(ticket)
    return result


async def _forward_unread(
    request: web.Request, svc: Services, route: LoginRoute, raw: bytes
) -> Result:
    user = await session_user(request, svc)
    try:
        async with svc.forwarder.exchange(request, body=raw, identity=svc.identity(user)) as answer:
            outcome = "forwarded_unread_ok" if judge(answer, route.success) else "forwarded_unread"
            return outcome, await svc.forwarder.respond(request, answer), None
    except UpstreamError as exc:
        return "upstream_error", upstream_failure(exc), None


async def _judge(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    submitted: Submitted,
    identifier: str,
    password: str,
) -> Result:
    try:
        user = await svc.store.find_user(identifier)
    except StoreUnavailable:
        # SECURITY: a user who may have migrated is never sent to the legacy app, which may
        # still accept a password changed here since; svc.known says who surely has not.
        if svc.cutover or svc.known.may_have_migrated(identifier):
            return (
                "store_error",
                unavailable("the user store is unavailable"),
                None,
            )
        # Fail safe: the legacy app can still answer; nothing is captured meanwhile.
        return "store_down_forwarded", await forward_raw(request, svc, submitted.raw), None

    try:
        if user is not None:
            return await _local(request, svc, route, submitted, user, password)
        if svc.cutover:
            # SECURITY: an unknown user costs the same argon2 work as a wrong password.
            await _refuse(svc, password)
            return "unknown_refused", render(route.failure), None
        return await _forward_and_capture(request, svc, route, submitted, identifier, password)
    except Overloaded:
        return (
            "overloaded",
            unavailable(OVERLOADED),
            None,
        )


async def _refuse(svc: Services, password: str) -> None:
    try:
        await svc.passwords.dummy_verify(password)
    except InvalidPassword:
        pass


async def _local(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    submitted: Submitted,
    user: User,
    password: str,
) -> tuple[str, web.StreamResponse, str | None]:
    try:
        await svc.passwords.verify(user.password_hash, password)
    except InvalidPassword:
        return "local_failed", render(route.failure), user.id
    if user.blocked:
        return "blocked", render(route.failure), user.id
    # argon2-cffi's recipe: verify, then rehash when the configured parameters changed.
    new_hash = (
        await svc.passwords.hash(password)
        if svc.passwords.needs_rehash(user.password_hash)
        else None
    )
    if new_hash is None:
        svc.login_records.add((user.id, time.time()))  # written behind the answer
    else:
        try:
            await svc.store.record_login(user.id, new_hash=new_hash)
        except StoreError as exc:
            log.event("login.record_failed", user=user.id, error=type(exc).__name__)
    svc.login_activity.note(None, user)  # for the cut-over readiness figure
    next_value = _next_value(request, submitted, route)
    cookie = svc.sessions.issue(user)
    answer = render(route.answer, next_value=next_value, profile=user.profile, cookies=[cookie])
    return ("rehashed" if new_hash else "local_ok"), answer, user.id


def _next_value(request: web.Request, submitted: Submitted, route: LoginRoute) -> str | None:
    name = route.answer.next_param
    if not name:
        return None
    return request.query.get(name) or submitted.optional(name)


async def _forward_and_capture(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    submitted: Submitted,
    identifier: str,
    password: str,
) -> Result:
    # Hash while the legacy app judges the password, when a thread is free: a capture then
    # adds almost no time to the login. Under load, hash after the answer, as before.
    early = asyncio.ensure_future(svc.passwords.hash(password)) if svc.passwords.idle else None

    async def capture(answer: UpstreamAnswer) -> User | None:
        user = await capture_user(
            svc,
            path=route.path,
            identifier=identifier,
            password=password,
            source="login",
            profile=lambda: _legacy_profile(svc, route, answer, request, identifier),
            reuse_existing=True,
            validate=svc.config.migration.validate,
            hashing=early,
        )
        # Accepted by the legacy app: migrated now (captured) or still not (rejected).
        svc.login_activity.note(identifier, user)
        return user

    try:
        return await forward_and_capture(
            request,
            svc,
            raw=submitted.raw,
            success=route.success,
            capture=capture,
            step=route.step,
        )
    finally:
        if early is not None:
            _discard(early)


def _discard(task: asyncio.Future[str]) -> None:
    """Drop an early hash nobody used: cancel it, or consume its result or error."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


async def _legacy_profile(
    svc: Services, route: LoginRoute, answer: UpstreamAnswer, request: web.Request, identifier: str
) -> dict[str, Any]:
    """The accepted user's profile: from the answer, a GET with its cookies, or the look-up."""
    if not route.profile.lookup:
        return await fetch_profile(svc.forwarder, route.profile, answer, request.headers)
    lookup = svc.lookup
    if lookup is None:
        raise ProfileError("login.profile.lookup needs [lookup]")
    by_email = lookup.by_email_enabled and ("@" in identifier or not lookup.by_username_enabled)
    try:
        found = await (lookup.by_email(identifier) if by_email else lookup.by_username(identifier))
    except LookupFailed as exc:
        raise ProfileError(str(exc)) from None
    if found is None:
        raise ProfileError("the look-up does not know the user the legacy app accepted")
    return found.profile
