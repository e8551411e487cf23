"""Multi-step legacy logins: a login the legacy app answers with a further step (a page to
confirm, an organisation to choose) is captured only when that step finishes it.

The login's answer matched the route's ``step`` rules: nothing is captured, the answer goes back
unchanged, and authshim keeps a pending capture (the identifier and the argon2id hash computed
meanwhile, in the store, under the hash of a random cookie value it sets, for ``step_expires``).
A POST to one of the route's ``step_paths`` that carries that cookie is forwarded as it came;
when the legacy app answers it as the login's ``success`` rules describe (and not as a step
again), the pending capture is completed with the profile of the user it logged in. Abandoned
ones expire and are counted (``login.step_abandoned``).

A step that is a second factor (``second_factor = true``, the default) never gets this far: the
user stays on the legacy login (proxy/flows/login.py), or the password alone would log them in.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time

from aiohttp import web

from proxy import log
from proxy.config import LoginRoute
from proxy.errors import UpstreamError
from proxy.flows.capture import capture_user, login_profile
from proxy.flows.common import Refusal, elapsed_ms, read_intercepted, session_user
from proxy.forward import UpstreamAnswer, upstream_failure
from proxy.legacy import is_step, judge
from proxy.services import Services
from store.base import PendingLogin, User
from store.errors import Overloaded, StoreError

Result = tuple[str, web.StreamResponse, str | None]


def cookie_name(svc: Services) -> str:
    return f"{svc.config.session.cookie}_pending"


def _key_hash(value: str) -> str:
    # SECURITY: the store holds only a hash of the cookie value, as it does of reset tokens.
    return hashlib.sha256(b"authshim-pending\x00" + value.encode()).hexdigest()


def _cookie(svc: Services, value: str, max_age: int) -> str:
    secure = "; Secure" if svc.config.session.secure else ""
    return f"{cookie_name(svc)}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"


async def pend(
    svc: Services, route: LoginRoute, identifier: str, hashing: asyncio.Future[str] | str
) -> list[str]:
    """Keep a pending capture for the login's next step; the ``Set-Cookie`` values that carry
    it (none when it cannot be kept: the login goes on, uncaptured)."""
    try:
        phc = await (asyncio.shield(hashing) if isinstance(hashing, asyncio.Future)
                     else svc.passwords.hash(hashing))  # fmt: skip
        value = secrets.token_urlsafe(32)
        now = time.time()
        pending = PendingLogin(identifier, phc, route.path, now + route.step_expires)
        await svc.store.pending_put(_key_hash(value), pending)
        if abandoned := await svc.store.pending_purge(now=now):
            svc.counters.add("login.step_abandoned", abandoned)
    except (Overloaded, StoreError) as exc:
        svc.counters.add("login.step_not_kept")
        log.event("login.step_not_kept", route=route.path, error=type(exc).__name__)
        return []
    return [_cookie(svc, value, int(route.step_expires))]


async def handle(request: web.Request, svc: Services, route: LoginRoute) -> web.StreamResponse:
    """Answer one POST to a step of a multi-step login and log one line about it."""
    started = time.perf_counter()
    outcome, response, user_id = await _step(request, svc, route)
    svc.counters.add(f"login.step.{outcome}")
    log.event("login.step", route=route.path, outcome=outcome, user=user_id,
              status=response.status, ms=elapsed_ms(started))  # fmt: skip
    return response


async def _step(request: web.Request, svc: Services, route: LoginRoute) -> Result:
    value = request.cookies.get(cookie_name(svc))
    try:
        raw = await read_intercepted(request, svc, "form", forms_same_site=False)
    except Refusal as refused:
        return refused.outcome, refused.response, None
    user = await session_user(request, svc)
    identity = svc.identity(user)
    url = str(request.url)
    try:
        async with svc.forwarder.exchange(request, body=raw, identity=identity) as answer:
            finished = judge(answer, route.success, url) and not is_step(answer, route.step, url)
            if not finished or not value:
                outcome = "forwarded" if value else "no_pending"
                return outcome, await svc.forwarder.respond(request, answer), None
            pending = await _take(svc, value)
            if pending is None or pending.route != route.path:
                return "expired", await svc.forwarder.respond(request, answer), None
            captured = await _complete(svc, route, pending, answer, request)
            cookies = [_cookie(svc, "", 0)]
            if captured is not None:
                svc.known.add_user(captured)
                cookies.append(svc.sessions.issue(captured))
            response = await svc.forwarder.respond(request, answer, cookies=cookies)
            outcome = "captured" if captured else "legacy_ok"
            return outcome, response, captured.id if captured else None
    except UpstreamError as exc:
        return "upstream_error", upstream_failure(exc), None


async def _take(svc: Services, value: str) -> PendingLogin | None:
    try:
        return await svc.store.pending_take(_key_hash(value), now=time.time())
    except StoreError:
        return None


async def _complete(
    svc: Services,
    route: LoginRoute,
    pending: PendingLogin,
    answer: UpstreamAnswer,
    request: web.Request,
) -> User | None:
    """Store the user the finished login names, with the hash kept since its first step."""
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    done.set_result(pending.password_hash)
    identifier = pending.identifier
    return await capture_user(
        svc,
        path=route.path,
        identifier=identifier,
        password="",  # never used: the hash is done
        source="login",
        # SECURITY: the profile of the user the last step logged in, checked to name the
        # identifier whose password the first step accepted.
        profile=lambda: login_profile(svc, route, answer, request, identifier),
        reuse_existing=True,
        validate=svc.config.migration.validate,
        hashing=done,
    )
