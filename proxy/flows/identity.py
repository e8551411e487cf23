"""A migrated user's identity over time: an email or username change (checked like a capture
and against the legacy app), and the profile refreshed from the legacy app after a login.

``change_identity`` is what the admin API's ``PATCH /admin/users/{id}`` calls; it raises
``IdentityConflict`` (with ``field`` and ``where``) when another user holds the new value.
"""

from __future__ import annotations

import time

from proxy import log
from proxy.errors import IdentityConflict, LookupFailed
from proxy.flows.common import elapsed_ms, put_pointer
from proxy.lookup import LegacyUser, Lookup
from proxy.services import Services
from store.base import User
from store.errors import RejectedCapture, StoreError, UserExists, UserNotFound
from store.validation import ProfileFields, normalise_identifier, validate_capture


async def change_identity(
    svc: Services, user_id: str, *, email: str | None = None, username: str | None = None
) -> User:
    """Give a stored user a new email and/or username (None leaves one as it is).

    The values pass the import rules (``store/validation.py``); neither may belong to another
    stored user, nor (mode ``migrate``, with ``[lookup]``) to another legacy user. The stored
    profile gets the new values too, where ``[profile]`` points, so identity headers follow.

    Raises:
        UserNotFound: no user has this id.
        RejectedCapture: a value breaks the rules; ``reason`` is ``no_email``, ``bad_email``,
            ``no_username`` or ``bad_username``.
        IdentityConflict: the email or username (``field``) belongs to another user, in the
            ``store`` or the ``legacy`` app (``where``).
        LookupFailed: the legacy look-up failed; never taken for "nobody has it".
        StoreError: the store failed.
    """
    started = time.perf_counter()
    outcome = "error"
    try:
        user, outcome = await _change(svc, user_id, email, username)
        return user
    except IdentityConflict as exc:
        outcome = f"conflict.{exc.where}.{exc.field}"
        raise
    except RejectedCapture as exc:
        outcome = f"rejected.{exc.reason}"
        raise
    except UserNotFound:
        outcome = "not_found"
        raise
    except LookupFailed:
        outcome = "lookup_error"
        raise
    finally:
        svc.counters.add(f"identity.{outcome}")
        log.event("identity.change", user=user_id, outcome=outcome, ms=elapsed_ms(started))


async def _change(
    svc: Services, user_id: str, email: str | None, username: str | None
) -> tuple[User, str]:
    user = await svc.store.get_user(user_id)
    if user is None:
        raise UserNotFound(f"no user with id {user_id!r}")
    fields = validate_capture(
        ProfileFields(
            user.legacy_id,
            email if email is not None else user.email,
            username if username is not None else user.username,
        ),
        requires_username=svc.config.migration.requires_username,
        username_case=svc.config.migration.username_case,
    )
    changes = {
        name: value
        for name, value, given, old in (
            ("email", fields.email, email, user.email),
            ("username", fields.username, username, user.username),
        )
        if given is not None and value and value != old
    }
    if not changes:
        return user, "unchanged"
    for name, value in changes.items():
        other = await svc.store.find_user(value)
        if other is not None and other.id != user.id:
            raise IdentityConflict(name, "store")
    if not svc.cutover and svc.lookup is not None:
        for name, value in changes.items():
            found = await _legacy(svc.lookup, name, value)
            if found is not None and not _same_person(user, found):
                raise IdentityConflict(name, "legacy")
    typed = {"email": email, "username": username}
    profile = user.profile
    for name in changes:
        pointer = getattr(svc.config.profile, name)
        profile = put_pointer(profile, pointer, (typed[name] or "").strip())
    try:
        updated = await svc.store.update_identity(
            user.id, email=changes.get("email"), username=changes.get("username"), profile=profile
        )
    except UserExists as exc:  # taken a moment ago, by a concurrent capture or change
        raise IdentityConflict(exc.field, "store") from exc
    svc.sessions.forget(user.id)
    return updated, "changed." + "+".join(sorted(changes))


async def _legacy(lookup: Lookup, name: str, value: str) -> LegacyUser | None:
    if name == "email":
        return await lookup.by_email(value) if lookup.by_email_enabled else None
    return await lookup.by_username(value) if lookup.by_username_enabled else None


def _same_person(user: User, found: LegacyUser) -> bool:
    """Whether the legacy user found is this user's own legacy record (same legacy id)."""
    return bool(user.legacy_id) and found.fields.legacy_id == user.legacy_id


# -- refresh on login -------------------------------------------------------------------------


def schedule_refresh(svc: Services, user_id: str) -> None:
    """After a local login, refresh the user's profile from the legacy app in the background
    (``profile.refresh_on_login``, mode ``migrate`` only)."""
    if not svc.config.profile.refresh_on_login or svc.cutover or svc.lookup is None:
        return
    if not svc.background.spawn(refresh_profile(svc, user_id), name="profile.refresh"):
        svc.counters.add("profile.refresh.shed")


async def refresh_profile(svc: Services, user_id: str) -> None:
    """Copy the legacy app's current profile of this user into the store; log the outcome."""
    started = time.perf_counter()
    try:
        outcome = await _refresh(svc, user_id)
    except StoreError as exc:
        outcome = "store_error"
        log.event("profile.refresh_failed", user=user_id, error=type(exc).__name__)
    svc.counters.add(f"profile.refresh.{outcome}")
    log.event("profile.refresh", user=user_id, outcome=outcome, ms=elapsed_ms(started))


async def _refresh(svc: Services, user_id: str) -> str:
    assert svc.lookup is not None
    user = await svc.store.get_user(user_id)
    if user is None:
        return "gone"
    try:
        found = await _find_again(svc.lookup, user)
    except LookupFailed:
        return "lookup_error"
    if found is None:
        return "not_found"
    # SECURITY: only the user's own legacy record may overwrite their profile.
    if user.legacy_id and found.fields.legacy_id and found.fields.legacy_id != user.legacy_id:
        return "other_user"
    if found.profile == user.profile:
        return "unchanged"
    try:
        fields = validate_capture(
            found.fields,
            requires_username=svc.config.migration.requires_username,
            username_case=svc.config.migration.username_case,
        )
        email = fields.email if fields.email != user.email else None
        username = fields.username if fields.username != user.username else None
    except RejectedCapture:
        email = username = None  # keep the stored identity; the profile is still worth having
    outcome = "updated"
    try:
        await svc.store.update_identity(
            user.id, email=email, username=username, profile=found.profile
        )
    except UserExists:
        # The legacy app gave this user an email or username another stored user has.
        await svc.store.update_profile(user.id, found.profile)
        outcome = "updated_profile_only"
    svc.sessions.forget(user.id)
    return outcome


async def _find_again(lookup: Lookup, user: User) -> LegacyUser | None:
    """The user's legacy record: by username first (it changes less), then by email."""
    if user.username and lookup.by_username_enabled:
        found = await lookup.by_username(user.username)
        if found is not None:
            return found
    if user.email and lookup.by_email_enabled:
        return await lookup.by_email(normalise_identifier(user.email))
    return None
