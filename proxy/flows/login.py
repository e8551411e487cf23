"""A login request's story: answered from the store, or forwarded and captured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web

from proxy import log
from proxy.answers import problem, render
from proxy.config import LoginRoute
from proxy.errors import (
    BadRequestBody,
    Throttled,
    UpstreamError,
)
from proxy.flows import steps
from proxy.flows.capture import Result, capture_user, forward_and_capture, login_profile
from proxy.flows.common import (
    NO_ROUTING,
    Read,
    Refusal,
    Routing,
    forward_reading,
    read_route,
    session_user,
    unavailable,
)
from proxy.flows.dbjudge import judged_by_database
from proxy.flows.failure import failure_answer
from proxy.flows.identity import schedule_refresh
from proxy.flows.recapture import may_recapture, recapture
from proxy.forward import UpstreamAnswer, upstream_failure
from proxy.legacy import has_second_factor, judge, profile_active
from proxy.limits import client_ip, throttled_answer
from proxy.pacing import FailurePace, Hold
from proxy.reading import Reading
from proxy.rules.hooks import on_login
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
    {"local_ok", "rehashed", "upgraded", "captured", "legacy_ok", "forwarded_unread_ok",
     "legacy_step", "second_factor", "step_pending", "recaptured", "recapture_rejected",
     "must_change"}
)
UNJUDGED = frozenset({"upstream_error", "overloaded", "store_error"})
# A wrong password, told by authshim or by the legacy app, or a user nobody has.
FAILED = frozenset(
    {"local_failed", "blocked", "inactive", "unknown_refused", "legacy_refused",
     "second_factor_refused"}
)  # fmt: skip
OVERLOADED = "too many logins at once; retry"
UNREADABLE = "\x00unreadable"  # the account that bodies authshim cannot read are counted on


async def handle(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    pace: FailurePace,
    routing: Routing = NO_ROUTING,
) -> web.StreamResponse:
    """Answer one login POST and log one line about it."""
    started = time.perf_counter()
    hold = Hold(pace, started)
    outcome, response, user_id = await _login(request, svc, route, hold, routing)
    if outcome in FAILED:
        await hold()  # SECURITY: every kind of failure answered at one pace (proxy/pacing.py)
    if outcome in ("local_ok", "rehashed", "upgraded") and user_id is not None:
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
    request: web.Request, svc: Services, route: LoginRoute, hold: Hold, routing: Routing
) -> tuple[str, web.StreamResponse, str | None]:
    server = svc.config.server
    try:
        # SECURITY: a form login from another site is login CSRF (the attacker's account);
        # a body or query a framework could read as another user is refused (one reading).
        read = await read_route(
            request, svc, path=route.path, fmt=route.format,
            credentials=(route.identifier, route.password), routing=routing.names,
        )  # fmt: skip
    except Refusal as refused:
        return refused.outcome, refused.response, None
    ip = client_ip(request, server.trusted_proxies)
    reading = read.reading
    if reading is not None and not routing.mine(reading.routing):
        # SECURITY: the body routes it elsewhere (wp-login.php's action): the legacy app would
        # not judge it as the login authshim would count.
        return "ambiguous", problem(400, "the request's fields route it to another form"), None
    try:
        if reading is None:
            raise BadRequestBody(read.unread)
        identifier = normalise_identifier(
            reading.text(route.identifier), svc.config.migration.username_case
        )
        password = reading.text(route.password)
        if not identifier or not password:
            raise BadRequestBody("the identifier and the password must not be empty")
    except BadRequestBody as exc:
        if svc.cutover:
            return "bad_request", problem(400, str(exc)), None
        # No framework reads a credential from it either (proxy/reading): the legacy app
        # answers it as before, SECURITY: under limits of its own all the same.
        return await _limited(
            svc, UNREADABLE, ip, lambda: _forward_unread(request, svc, route, read)
        )
    if svc.passwords.saturated:
        # Shed before any store or limit work: under overload a 503 must cost next to nothing.
        return "overloaded", unavailable(OVERLOADED), None
    try:
        user: User | None = await svc.store.find_user(identifier)
        store_down = False
    except StoreUnavailable:
        user, store_down = None, True
    return await _limited(
        svc,
        identifier,
        ip,
        lambda: _judge(
            request, svc, route, reading, read.target, identifier, password, user, store_down,
            hold,
        ),
        user_id=user.id if user else None,
    )


async def _limited(
    svc: Services,
    identifier: str,
    ip: str,
    judged: Callable[[], Awaitable[Result]],
    *,
    user_id: str | None = None,
) -> Result:
    """Count the attempt before any argon2 or legacy work, then settle it by its outcome."""
    try:
        # With the store down this still counts, in this process (see proxy/limits.py).
        ticket = await svc.limits.login_attempt(identifier, ip, user_id=user_id)
    except Throttled as exc:
        return "throttled", throttled_answer(exc), None
    result = await judged()
    if result[0] in SUCCEEDED:
        svc.limits.login_succeeded(ticket)
    elif result[0] in UNJUDGED:
        svc.limits.login_unjudged(ticket)
    return result


async def _forward_unread(
    request: web.Request, svc: Services, route: LoginRoute, read: Read
) -> Result:
    user = await session_user(request, svc)
    body = read.reading.body if read.reading is not None else read.raw
    try:
        async with svc.forwarder.exchange(
            request, body=body, identity=svc.identity(user), target=read.target
        ) as answer:
            outcome = "forwarded_unread_ok" if judge(answer, route.success) else "forwarded_unread"
            return outcome, await svc.forwarder.respond(request, answer), None
    except UpstreamError as exc:
        return "upstream_error", upstream_failure(exc), None


async def _judge(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    reading: Reading,
    target: str,
    identifier: str,
    password: str,
    user: User | None,
    store_down: bool,
    hold: Hold,
) -> Result:
    if store_down:
        # SECURITY: a user who may have migrated is never sent to the legacy app, which may
        # still accept a password changed here since; svc.known says who surely has not.
        if svc.cutover or svc.known.may_have_migrated(identifier):
            return (
                "store_error",
                unavailable("the user store is unavailable"),
                None,
            )
        # Fail safe: the legacy app can still answer; nothing is captured meanwhile.
        forwarded = await forward_reading(request, svc, reading, target)
        return "store_down_forwarded", forwarded, None

    try:
        if user is not None:
            return await _local(request, svc, route, reading, target, user, password, hold)
        if svc.cutover:
            # SECURITY: an unknown user costs the same argon2 work as a wrong password.
            await _refuse(svc, password)
            return "unknown_refused", render(route.failure), None
        if route.judge == "database":  # the legacy database judges: nothing is forwarded
            next_value = _next_value(reading, route)
            return await judged_by_database(svc, route, identifier, password, hold, next_value)
        return await _forward_and_capture(
            request, svc, route, reading, target, identifier, password, hold
        )
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
    reading: Reading,
    target: str,
    user: User,
    password: str,
    hold: Hold,
) -> tuple[str, web.StreamResponse, str | None]:
    try:
        await svc.passwords.verify(user.password_hash, password)
    except InvalidPassword:
        if may_recapture(svc, user):  # changed at the legacy app since? (proxy/flows/recapture)
            return await recapture(request, svc, route, reading, target, user, password, hold)
        failed = await failure_answer(request, svc, route, reading, target, hold)
        return "local_failed", failed, user.id
    if user.blocked or not profile_active(user.profile, svc.config.profile):
        # Blocked here, or locked at the legacy app since (its profile, refreshed or not).
        failed = await failure_answer(request, svc, route, reading, target, hold)
        return ("blocked" if user.blocked else "inactive"), failed, user.id
    if has_second_factor(user.profile, svc.config.profile):
        # SECURITY: never answered on the password alone: the legacy app asks for the second
        # factor (in cut-over nobody can, so the login fails).
        if svc.cutover:
            failed = await failure_answer(request, svc, route, reading, target, hold)
            return "second_factor_refused", failed, user.id
        forwarded = await forward_reading(request, svc, reading, target)
        return "second_factor", forwarded, user.id
    if ruled := await on_login(request, svc, route, user, "local", reading, target, hold):
        return ruled  # the operator's rules denied it, or a new password is due (issue 16)
    # argon2-cffi's recipe: verify, then rehash when the configured parameters changed.
    new_hash = (
        await svc.passwords.hash(password)
        if svc.passwords.needs_rehash(user.password_hash)
        else None
    )
    legacy = svc.passwords.is_legacy(user.password_hash)  # imported (issue 17): upgrade it
    if new_hash is None:
        svc.login_records.add((user.id, time.time()))  # written behind the answer
    else:
        try:
            if legacy:  # guarded by the old hash: a password set meanwhile wins
                await svc.store.upgrade_password(user.id, user.password_hash, new_hash)
            else:
                await svc.store.record_login(user.id, new_hash=new_hash)
        except StoreError as exc:
            log.event("login.record_failed", user=user.id, error=type(exc).__name__)
    svc.login_activity.note(None, user)  # for the cut-over readiness figure
    next_value = _next_value(reading, route)
    cookie = svc.sessions.issue(user)
    answer = render(route.answer, next_value=next_value, profile=user.profile, cookies=[cookie])
    outcome = "upgraded" if legacy else "rehashed" if new_hash else "local_ok"
    return outcome, answer, user.id


def _next_value(reading: Reading, route: LoginRoute) -> str | None:
    name = route.answer.next_param
    if not name:
        return None
    # The query as authshim read it (re-encoded), then the body.
    return dict(parse_qsl(reading.query)).get(name) or reading.optional(name)


async def _forward_and_capture(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    reading: Reading,
    target: str,
    identifier: str,
    password: str,
    hold: Hold,
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
            profile=lambda: login_profile(svc, route, answer, request, identifier),
            reuse_existing=True,
            validate=svc.config.migration.validate,
            hashing=early,
        )
        # Accepted by the legacy app: migrated now (captured) or still not (rejected).
        svc.login_activity.note(identifier, user)
        return user

    async def step() -> tuple[str, list[str]]:
        if route.second_factor:
            # SECURITY: a second factor is due: this user stays on the legacy login, or the
            # password alone would log them in here from now on.
            return "second_factor", []
        return "step_pending", await steps.pend(svc, route, identifier, early or password)

    try:
        return await forward_and_capture(
            request, svc, raw=reading.body, target=target, success=route.success,
            capture=capture, before_refusal=hold, step=route.step, on_step=step,
            on_user=lambda u: on_login(request, svc, route, u, "captured", reading, target, hold),
        )  # fmt: skip
    finally:
        if early is not None:
            _discard(early)


def _discard(task: asyncio.Future[str]) -> None:
    """Drop an early hash nobody used: cancel it, or consume its result or error."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()
