"""A migrated user's password changed at the legacy app since the capture (an admin reset
there, a mobile app, an API): with ``[migration] recapture``, a password authshim refuses is
asked of the legacy app, and when it accepts, the stored hash is replaced.

Never in cut-over (the legacy login is off); never for a user whose password was set at authshim
since (reset, change, sign-up, admin: source other than a login capture or an import, or a
bumped session epoch), so a password changed here is not undone by the legacy app's old one;
always within the same brute-force limits as the login that failed (it was counted before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import log
from proxy.config import LoginRoute
from proxy.errors import ProfileError, UpstreamError
from proxy.flows.capture import login_profile
from proxy.forward import UpstreamAnswer, upstream_failure
from proxy.legacy import is_step, judge, map_profile
from proxy.reading import Reading
from proxy.services import Services
from store.base import User
from store.errors import Overloaded, StoreError
from store.validation import identity_matches

Result = tuple[str, web.StreamResponse, str | None]


def may_recapture(svc: Services, user: User) -> bool:
    """Whether a failed local password of ``user`` may be asked of the legacy app."""
    return (
        svc.config.migration.recapture
        and not svc.cutover
        and user.source in ("login", "import")  # the password came from the legacy app
        and user.session_epoch == 0  # SECURITY: no password set (or sessions ended) here since
    )


async def recapture(
    request: web.Request,
    svc: Services,
    route: LoginRoute,
    reading: Reading,
    target: str,
    user: User,
    password: str,
    hold: Callable[[], Awaitable[None]],
) -> Result:
    """Forward the login as authshim read it; the legacy app's refusal goes back (at the
    failure pace), its acceptance replaces the stored hash and gets authshim's session."""
    url = str(request.url)
    try:
        async with svc.forwarder.exchange(request, body=reading.body, target=target) as answer:
            if is_step(answer, route.step, url) or not judge(answer, route.success, url):
                await hold()
                return "local_failed", await svc.forwarder.respond(request, answer), user.id
            cookies = []
            if await _replaced(svc, route, request, answer, user, password):
                cookies.append(svc.sessions.issue(user))
                outcome = "recaptured"
            else:
                outcome = "recapture_rejected"
            return outcome, await svc.forwarder.respond(request, answer, cookies=cookies), user.id
    except UpstreamError as exc:
        return "upstream_error", upstream_failure(exc), user.id


async def _replaced(
    svc: Services,
    route: LoginRoute,
    request: web.Request,
    answer: UpstreamAnswer,
    user: User,
    password: str,
) -> bool:
    identifier = user.email or user.username or ""
    try:
        profile = await login_profile(svc, route, answer, request, identifier)
        fields = map_profile(profile, svc.config.profile)
        # SECURITY: the legacy app must have accepted this very user, not another one.
        case = svc.config.migration.username_case
        if not identity_matches(identifier, fields, case) and not (
            user.username and identity_matches(user.username, fields, case)
        ):
            raise ProfileError("the accepted profile names another user")
        phc = await svc.passwords.hash(password)
        # Guarded by the hash that refused it: a change here meanwhile wins.
        if not await svc.store.upgrade_password(user.id, user.password_hash, phc):
            raise StoreError("the stored password changed meanwhile")
    except (ProfileError, UpstreamError, Overloaded, StoreError) as exc:
        svc.counters.add("login.recapture_failed")
        log.event("login.recapture_failed", user=user.id, error=type(exc).__name__)
        return False
    svc.sessions.forget(user.id)
    return True
