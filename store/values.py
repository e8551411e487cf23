"""Python values as both backends write them: identifiers and profiles."""

from __future__ import annotations

from typing import Any

import orjson

from store.errors import RejectedCapture, StoreUnavailable
from store.validation import USERNAME_CASES, normalise_identifier, username_key

# The setting that records which rule the stored username keys were folded by.
USERNAME_CASE_SETTING = "username_case"


def encodable(text: str) -> bool:
    """Whether ``text`` can be stored (as UTF-8): a lone surrogate cannot."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def norm(identifier: str | None) -> str | None:
    """Normalise an email or username for storage; an empty one is stored as absent."""
    if identifier is None:
        return None
    # SECURITY: an empty identifier is stored as absent, so that find_user("") finds nobody.
    return normalise_identifier(identifier) or None


def username_columns(username: str | None, case: str) -> tuple[str | None, str | None]:
    """Return the ``(username, username_key)`` columns of a username under ``case``: the
    spelling kept (lower-case under ``lower``) and the key it is unique and found by."""
    spelled = None if username is None else normalise_identifier(username, case) or None
    return spelled, None if spelled is None else username_key(spelled, case)


def check_username_case(stored: str | None, wanted: str, *, has_users: bool) -> bool:
    """Return whether the store must record ``wanted`` as its username rule.

    Raises:
        ValueError: ``wanted`` is not one of ``USERNAME_CASES``.
        StoreUnavailable: the store holds users whose keys another rule folded; switching
            silently would make some of them unreachable or merge two legacy users.
    """
    if wanted not in USERNAME_CASES:
        raise ValueError(f"username_case must be one of {', '.join(USERNAME_CASES)}")
    if (stored or "lower") == wanted:  # a store without the setting predates it: lower
        return False
    if has_users:
        # SECURITY: keys folded by another rule would judge one legacy user by another's hash.
        raise StoreUnavailable(
            f"the store's usernames are folded by username_case = {stored or 'lower'!r}, not"
            f" {wanted!r}: keep the store's rule, or start a new store"
            " (docs/configuration.md, [migration] username_case)"
        )
    return True


def profile_json(profile: dict[str, Any]) -> str:
    """Encode a profile before the database is touched, so a bad one leaves nothing behind.

    Raises:
        RejectedCapture: ``bad_profile``, for what JSON cannot hold (lone surrogates,
            integers past 64 bits); a StoreError, so a capture fails without a crash.
    """
    try:
        # Non-text keys become text, as the standard json module (and PostgreSQL) do.
        return orjson.dumps(profile, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:  # orjson.JSONEncodeError
        raise RejectedCapture("bad_profile", str(exc)) from exc
