"""What may be stored: identifier normalisation and the rules a captured profile must pass.

Pure functions only. Uniqueness is not decided here but by the store (``UserExists``), since
only the database can decide it without a race; ``reason_for_conflict`` names its outcome.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from store.errors import RejectedCapture

MAX_EMAIL = 254  # RFC 5321's limit on a forward path, the usual cap on an address
MAX_USERNAME = 150  # Django's limit, the most common legacy site's

# Control, format (zero-width and bidi overrides), surrogate, private-use and unassigned
# characters, and line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

# In ASCII, isspace() is \t-\r, \x1c-\x1f and space; the Cc category is \x00-\x1f and \x7f.
_ASCII_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_CONFLICT_REASONS = {
    "email": "duplicate_email",
    "username": "duplicate_username",
    "legacy_id": "duplicate_legacy_id",
}


@dataclass(frozen=True, slots=True)
class ProfileFields:
    """The three fields of a legacy profile authshim keeps as columns."""

    legacy_id: str | None
    email: str | None
    username: str | None


def normalise_identifier(s: str) -> str:
    """Return ``s`` as it is stored and looked up: NFKC, stripped, lower-case."""
    # NFKC first so that full-width letters and compatibility spaces fold too; the second
    # NFKC makes the result stable, since lower-casing can yield a non-NFKC string.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).strip().lower())


def validate_capture(fields: ProfileFields, *, requires_username: bool) -> ProfileFields:
    """Return ``fields`` normalised for storage, or raise ``RejectedCapture(reason)``.

    Values of any JSON type are accepted at run time: an integer legacy id is stringified;
    a legacy id of any other non-text type is dropped, since it only cross-references.

    Raises:
        RejectedCapture: with ``reason`` one of ``no_email``, ``bad_email``, ``no_username``,
            ``bad_username``.
    """
    return ProfileFields(
        legacy_id=_legacy_id(fields.legacy_id),
        email=_email(fields.email),
        username=_username(fields.username, required=requires_username),
    )


def reason_for_conflict(field: str) -> str:
    """Return the rejection reason for a ``UserExists(field)`` raised by the store."""
    try:
        return _CONFLICT_REASONS[field]
    except KeyError:
        raise ValueError(f"no unique field named {field!r}") from None


def identity_matches(identifier_normalised: str, fields: ProfileFields) -> bool:
    """Return whether the submitted identifier names this profile (its email or username).

    Both sides are compared normalised, so raw profile fields (``"Bob@X.io"``) may be given.
    """
    # SECURITY: a capture is only stored when the legacy app's profile is the user who typed
    # the identifier; an empty identifier must never match a profile lacking a field.
    identifier = normalise_identifier(identifier_normalised)
    if not identifier:
        return False
    return any(
        isinstance(value, str) and normalise_identifier(value) == identifier
        for value in (fields.email, fields.username)
    )


def _has_space_or_control(text: str) -> bool:
    if text.isascii():  # the common case, 10x faster (the bulk import checks every user)
        return _ASCII_SPACE_OR_CONTROL.search(text) is not None
    return any(ch.isspace() or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text)


def _has_control(text: str) -> bool:
    if text.isascii():  # ASCII's only forbidden characters are its controls (Cc)
        return _ASCII_CONTROL.search(text) is not None
    return any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text)


def _legacy_id(value: object) -> str | None:
    if isinstance(value, bool):  # JSON true/false is no id, though bool subclasses int
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _email(value: object) -> str:
    if value is not None and not isinstance(value, str):
        raise RejectedCapture("bad_email", "not text")
    email = normalise_identifier(value or "")
    if not email:
        raise RejectedCapture("no_email")
    if len(email) > MAX_EMAIL:
        raise RejectedCapture("bad_email", f"longer than {MAX_EMAIL} characters")
    if _has_space_or_control(email):
        raise RejectedCapture("bad_email", "contains spaces or control characters")
    local, at, domain = email.partition("@")
    if not at or "@" in domain:
        raise RejectedCapture("bad_email", "needs exactly one @")
    if not local:
        raise RejectedCapture("bad_email", "empty local part")
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        raise RejectedCapture("bad_email", "domain is not a dotted name")
    return email


def _username(value: object, *, required: bool) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RejectedCapture("bad_username", "not text")
    username = normalise_identifier(value or "")
    if not username:
        if required:
            raise RejectedCapture("no_username")
        return None
    if len(username) > MAX_USERNAME:
        raise RejectedCapture("bad_username", f"longer than {MAX_USERNAME} characters")
    if _has_control(username):
        raise RejectedCapture("bad_username", "contains control characters")
    return username
