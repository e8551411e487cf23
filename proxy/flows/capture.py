"""Capturing a user the legacy app just accepted (a login, or a sign-up it handled itself).

Capture never changes what the client gets: the legacy app's answer goes back as it came, with
authshim's session cookie added only when the user was stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy import log
from proxy.config import LoginRoute, SuccessRules
from proxy.errors import LookupFailed, ProfileError, UpstreamError
from proxy.forward import UpstreamAnswer, upstream_failure
from proxy.legacy import fetch_profile, is_step, judge, map_profile, profile_active
from proxy.rules.hooks import on_capture
from proxy.rules.notify import notify
from proxy.services import Services
from store.base import NewUser, User
from store.errors import Overloaded, RejectedCapture, StoreError, UserExists
from store.validation import (
    ProfileFields,
    identity_matches,
    normalise_identifier,
    reason_for_conflict,
    validate_capture,
)

Result = tuple[str, web.StreamResponse, str | None]
Capture = Callable[[UpstreamAnswer], Awaitable[User | None]]


async def forward_and_capture(
    request: web.Request,
    svc: Services,
    *,
    raw: bytes,
    target: str,
    success: SuccessRules,
    capture: Capture,
    before_refusal: Callable[[], Awaitable[None]] | None = None,
    step: SuccessRules | None = None,
    on_step: Callable[[], Awaitable[tuple[str, list[str]]]] | None = None,
    on_user: Callable[[User], Awaitable[Result | None]] | None = None,
) -> Result:
    """Forward ``raw`` (the body as authshim read it, re-encoded) to ``target`` (the route's
    path and re-encoded query); when ``success`` holds, ``capture`` the user.
    ``before_refusal`` runs before a refusal is relayed (a login's failure pace). An answer
    ``step`` rules match (a second-factor page) is relayed and never captured; ``on_step``
    names its outcome and the cookies to add (a multi-step login's pending capture).
    ``on_user`` may answer instead of the legacy app once the user is stored (a login's rules:
    a deny, or the must-change-password step; proxy/rules/hooks.py)."""
    url = str(request.url)  # what a relative Location is resolved against
    try:
        async with svc.forwarder.exchange(request, body=raw, target=target) as answer:
            if is_step(answer, step, url):
                # SECURITY: the password was right but the login is not done (a second factor
                # is due): capturing here would let the password alone log in from now on.
                outcome, cookies = await on_step() if on_step else ("legacy_step", [])
                response = await svc.forwarder.respond(request, answer, cookies=cookies)
                return outcome, response, None
            if not judge(answer, success, url):
                if before_refusal is not None:
                    await before_refusal()
                return "legacy_refused", await svc.forwarder.respond(request, answer), None
            user = await capture(answer)
            svc.known.add_user(user)  # migrated now: never forwarded while the store is down
            if user is not None and on_user is not None and (ruled := await on_user(user)):
                return ruled
            cookies = [svc.sessions.issue(user)] if user else []
            response = await svc.forwarder.respond(request, answer, cookies=cookies)
            return ("captured" if user else "legacy_ok"), response, user.id if user else None
    except UpstreamError as exc:
        return "upstream_error", upstream_failure(exc), None


async def capture_user(
    svc: Services,
    *,
    path: str,
    identifier: str,
    password: str,
    source: str,
    profile: Callable[[], Awaitable[dict[str, Any]]],
    reuse_existing: bool,
    validate: bool,
    hashing: asyncio.Future[str] | None = None,
) -> User | None:
    """Store the accepted user, or count why not; ``reuse_existing`` for a login, whose
    concurrent twin (here or on another replica) is the same person; ``hashing`` is the
    password's hash already under way."""
    async with svc.capture_locks.hold(identifier):
        try:
            if reuse_existing and (existing := await svc.store.find_user(identifier)):
                return existing  # a concurrent login of the same user captured them meanwhile
            found = await profile()
            fields = checked_fields(
                identifier, map_profile(found, svc.config.profile), svc, validate
            )
            # SECURITY: a user the legacy app refuses (locked, say) is not migrated, or
            # authshim would let them in where the legacy app does not.
            if not profile_active(found, svc.config.profile):
                raise RejectedCapture("inactive")
            # An early hash (started while the legacy app judged) is shielded: the caller
            # discards it, and a cancelled capture must not leave it half-awaited.
            ruled = await on_capture(svc, source=source, fields=fields, profile=found,
                                     password=password)  # fmt: skip
            if ruled is not found:  # a rule's profile must still name the same user
                found, fields = ruled, checked_fields(
                    identifier, map_profile(ruled, svc.config.profile), svc, validate
                )
            phc = await (asyncio.shield(hashing) if hashing else svc.passwords.hash(password))
            new = NewUser(fields.email, fields.username, phc, found, fields.legacy_id, source)
            stored = await svc.store.insert_user(new)
            notify(svc, "migrated", stored, "signup" if source == "signup" else "captured",
                   route=path)  # fmt: skip
            return stored
        except RejectedCapture as exc:
            reason = exc.reason
        except UserExists as exc:
            # Another replica captured the same user at the same moment: one record, reuse it.
            if reuse_existing and (twin := await _quiet_find(svc, identifier)):
                return twin
            reason = reason_for_conflict(exc.field)
        except ProfileError:
            reason = "no_profile"
        except UpstreamError:
            reason = "profile_upstream_error"
        except Overloaded:
            reason = "overloaded"
        except StoreError:
            reason = "store_error"
    svc.counters.add(f"capture.rejected.{reason}")
    log.event("capture.rejected", route=path, reason=reason)
    return None


def checked_fields(
    identifier: str, fields: ProfileFields, svc: Services, validate: bool
) -> ProfileFields:
    """The profile's fields, checked to name ``identifier`` and (``validate``) the import rules."""
    # SECURITY: a profile that names another user is never stored under this password.
    # Under username_case "first_letter", CASEY's login never captures Casey's profile.
    case = svc.config.migration.username_case
    if not identity_matches(identifier, fields, case):
        raise RejectedCapture("identity_mismatch")
    if validate:
        return validate_capture(
            fields, requires_username=svc.config.migration.requires_username, username_case=case
        )
    return ProfileFields(
        legacy_id=fields.legacy_id,
        email=normalise_identifier(fields.email) if fields.email else None,
        username=normalise_identifier(fields.username, case) if fields.username else None,
    )


async def _quiet_find(svc: Services, identifier: str) -> User | None:
    try:
        return await svc.store.find_user(identifier)
    except StoreError:
        return None


async def login_profile(
    svc: Services, route: LoginRoute, answer: UpstreamAnswer, request: web.Request, identifier: str
) -> dict[str, Any]:
    """The profile of the user a login route's legacy answer accepted: a pointer into the
    answer, a GET with its cookies, or the look-up by ``identifier``."""
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
