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

# How the legacy app folds usernames ([migration] username_case): "lower" (the default: any
# case is one user), "first_letter" (MediaWiki: "casey" is "Casey", "CASEY" is another user),
# "exact" (every spelling is its own user). Emails are folded to lower case under every rule.
USERNAME_CASES = ("lower", "first_letter", "exact")

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


def normalise_identifier(s: str, case: str = "lower") -> str:
    """Return ``s`` as it is stored: NFKC, stripped, and lower-case under the ``lower`` rule
    (always for an email); under the other ``USERNAME_CASES`` the spelling is kept."""
    # NFKC first so that full-width letters and compatibility spaces fold too; the second
    # NFKC makes the result stable, since lower-casing can yield a non-NFKC string.
    text = unicodedata.normalize("NFKC", s).strip()
    if case == "lower":
        text = text.lower()
    return unicodedata.normalize("NFKC", text)


def username_key(s: str, case: str = "lower") -> str:
    """Return the key two usernames name one user by under ``case`` (what the store keeps
    unique and looks usernames up by): ``first_letter`` folds the first letter alone."""
    text = normalise_identifier(s, case)
    if case == "first_letter" and text:
        text = unicodedata.normalize("NFKC", text[0].lower() + text[1:])
    return text


def identifier_key(s: str, case: str = "lower") -> str:
    """Return the key of an identifier that may be an email or a username: what limits and
    counts treat as one account. Text with an ``@`` is folded like an email."""
    # SECURITY: an email differing in case is one account, so "@" text is lower-cased even
    # under "exact": the worst this does is share a limit between two usernames with an @.
    return normalise_identifier(s) if "@" in s else username_key(s, case)


def validate_capture(
    fields: ProfileFields, *, requires_username: bool, username_case: str = "lower"
) -> ProfileFields:
    """Return ``fields`` normalised for storage, or raise ``RejectedCapture(reason)``.

    The username keeps the legacy app's spelling unless ``username_case`` is ``lower``.

    Values of any JSON type are accepted at run time: an integer legacy id is stringified;
    a legacy id of any other non-text type is dropped, since it only cross-references.

    Raises:
        RejectedCapture: with ``reason`` one of ``no_email``, ``bad_email``, ``no_username``,
            ``bad_username``.
    """
    return ProfileFields(
        legacy_id=_legacy_id(fields.legacy_id),
        email=_email(fields.email),
        username=_username(fields.username, required=requires_username, case=username_case),
    )


def reason_for_conflict(field: str) -> str:
    """Return the rejection reason for a ``UserExists(field)`` raised by the store."""
    try:
        return _CONFLICT_REASONS[field]
    except KeyError:
        raise ValueError(f"no unique field named {field!r}") from None


def identity_matches(
    identifier_normalised: str, fields: ProfileFields, username_case: str = "lower"
) -> bool:
    """Return whether the submitted identifier names this profile (its email or username).

    Both sides are compared normalised, so raw profile fields (``"Bob@X.io"``) may be given:
    the email folded to lower case, the username by ``username_case``.
    """
    # SECURITY: a capture is only stored when the legacy app's profile is the user who typed
    # the identifier; an empty identifier must never match a profile lacking a field. Under
    # "first_letter", "CASEY" does not match Casey's profile: they are two legacy users.
    if not normalise_identifier(identifier_normalised):
        return False
    email, username = fields.email, fields.username
    return (
        isinstance(email, str)
        and normalise_identifier(email) == normalise_identifier(identifier_normalised)
    ) or (
        isinstance(username, str)
        and username_key(username, username_case)
        == username_key(identifier_normalised, username_case)
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


def _username(value: object, *, required: bool, case: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RejectedCapture("bad_username", "not text")
    username = normalise_identifier(value or "", case)
    if not username:
        if required:
            raise RejectedCapture("no_username")
        return None
    if len(username) > MAX_USERNAME:
        raise RejectedCapture("bad_username", f"longer than {MAX_USERNAME} characters")
    if _has_control(username):
        raise RejectedCapture("bad_username", "contains control characters")
    return username
