"""Normalisation and the capture rules: each rejection reason, case folding, identity."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import RejectedCapture
from store.validation import (
    ProfileFields,
    identity_matches,
    normalise_identifier,
    reason_for_conflict,
    validate_capture,
)


def fields(email: Any = "bob@x.io", username: Any = "bob", legacy_id: Any = "17") -> ProfileFields:
    """A profile whose fields may be of any JSON type, as a legacy app may send."""
    return ProfileFields(legacy_id=legacy_id, email=email, username=username)


def reason(profile: ProfileFields, *, requires_username: bool = False) -> str:
    """The reason validate_capture gives for refusing ``profile``."""
    with pytest.raises(RejectedCapture) as caught:
        validate_capture(profile, requires_username=requires_username)
    return caught.value.reason


def test_valid_profile_is_lower_cased_and_stripped() -> None:
    """Email and username come back stripped and lower-case, legacy id as text."""
    got = validate_capture(fields(" Bob@X.IO ", " BoB ", 42), requires_username=True)
    assert got == ProfileFields(legacy_id="42", email="bob@x.io", username="bob")


def test_full_width_input_is_folded_by_nfkc() -> None:
    """Full-width letters fold to their ASCII form, so look-alikes cannot make twins."""
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "bob")  # full-width letters
    got = validate_capture(fields(f"{full_width}@x.io", full_width.upper()), requires_username=True)
    assert (got.email, got.username) == ("bob@x.io", "bob")


@pytest.mark.parametrize("email", [None, "", "   ", "\t\n"])
def test_missing_email_is_no_email(email: Any) -> None:
    """An absent or blank email is no_email."""
    assert reason(fields(email=email)) == "no_email"


@pytest.mark.parametrize(
    "email",
    [
        "bob",
        "bob@",
        "@x.io",
        "bob@x",
        "bob@@x.io",
        "bob@x@y.io",
        "bob smith@x.io",
        "bob@x .io",
        "bob@.x.io",
        "bob@x.io.",
        "bob@x..io",
        "bob\x00@x.io",
        "bob\u200b@x.io",
        "a" * 250 + "@x.io",
        42,
        ["bob@x.io"],
    ],
)
def test_malformed_email_is_bad_email(email: Any) -> None:
    """Anything but one @, a non-empty local part and a dotted domain is bad_email."""
    assert reason(fields(email=email)) == "bad_email"


def test_email_of_254_characters_is_accepted() -> None:
    """The length limit is inclusive: 254 characters pass, 255 do not."""
    domain = "@" + "d" * 60 + ".io"
    assert validate_capture(fields("a" * (254 - len(domain)) + domain), requires_username=False)
    assert reason(fields("a" * (255 - len(domain)) + domain)) == "bad_email"


def test_unicode_email_is_accepted() -> None:
    """Internationalised addresses are well-formed."""
    got = validate_capture(fields("ZOË@Bücher.de"), requires_username=False)
    assert got.email == "zoë@bücher.de"


@pytest.mark.parametrize("username", [None, "", "  "])
def test_missing_username_is_no_username_only_when_required(username: Any) -> None:
    """A missing username is no_username when required, and None otherwise."""
    assert reason(fields(username=username), requires_username=True) == "no_username"
    assert validate_capture(fields(username=username), requires_username=False).username is None


@pytest.mark.parametrize(
    "username", ["bo\x07b", "bob\u202e", "bo\nb", "b" * 151, 42, {"name": "bob"}]
)
def test_bad_username(username: Any) -> None:
    """Control or format characters, more than 150 characters, or no text: bad_username."""
    assert reason(fields(username=username)) == "bad_username"
    assert reason(fields(username=username), requires_username=True) == "bad_username"


def test_username_of_150_characters_with_spaces_is_accepted() -> None:
    """150 characters pass, and inner spaces are not control characters."""
    name = "bob smith " + "b" * 140
    assert validate_capture(fields(username=name), requires_username=True).username == name


@pytest.mark.parametrize(
    ("legacy_id", "expected"),
    [(17, "17"), ("  17 ", "17"), ("", None), (None, None), (True, None), (1.5, None)],
)
def test_legacy_id_becomes_text_or_none(legacy_id: Any, expected: str | None) -> None:
    """Integer ids are stringified; blank or non-id values are dropped."""
    assert validate_capture(fields(legacy_id=legacy_id), requires_username=False).legacy_id == (
        expected
    )


def test_email_is_checked_before_username() -> None:
    """With both fields wrong, the email's reason is reported."""
    assert reason(fields(email=None, username=None), requires_username=True) == "no_email"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("email", "duplicate_email"),
        ("username", "duplicate_username"),
        ("legacy_id", "duplicate_legacy_id"),
    ],
)
def test_reason_for_conflict(field: str, expected: str) -> None:
    """Each UserExists field maps to its duplicate_* reason."""
    assert reason_for_conflict(field) == expected


def test_reason_for_unknown_conflict_is_an_error() -> None:
    """A field the store never reports is a programming error."""
    with pytest.raises(ValueError):
        reason_for_conflict("id")


def test_identity_matches_email_or_username() -> None:
    """The submitted identifier must be the profile's email or its username."""
    profile = ProfileFields(legacy_id="1", email="bob@x.io", username="bob")
    assert identity_matches("bob@x.io", profile)
    assert identity_matches("bob", profile)
    assert not identity_matches("alice", profile)
    assert not identity_matches("bob@x.io.evil", profile)


def test_identity_matches_raw_profile_fields() -> None:
    """Profile fields straight from the legacy app are compared in their normalised form."""
    profile = ProfileFields(legacy_id="1", email=" Bob@X.io", username="BoB")
    assert identity_matches("bob@x.io", profile)
    assert identity_matches("bob", profile)
    assert not identity_matches("bo", profile)


def test_identity_never_matches_an_absent_field() -> None:
    """An empty identifier does not match a profile that lacks a username."""
    profile = ProfileFields(legacy_id=None, email="bob@x.io", username=None)
    assert not identity_matches("", profile)
    assert not identity_matches("", ProfileFields(legacy_id=None, email="", username=" "))


def test_normalise_identifier() -> None:
    """Identifiers are NFKC-folded, stripped and lower-cased."""
    assert normalise_identifier("  Bob@X.IO\n") == "bob@x.io"
    assert normalise_identifier("\uff22\uff4f\uff42") == "bob"  # full-width "Bob"
    assert normalise_identifier("\u212a") == "k"  # KELVIN SIGN


@given(st.text())
def test_normalise_identifier_is_idempotent(s: str) -> None:
    """Normalising twice changes nothing, so stored and looked-up forms always agree."""
    once = normalise_identifier(s)
    assert normalise_identifier(once) == once


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


@given(
    email=st.text() | json_scalars,
    username=st.text() | json_scalars,
    legacy_id=json_scalars,
    requires_username=st.booleans(),
)
def test_validate_capture_returns_or_rejects_on_any_input(
    email: Any, username: Any, legacy_id: Any, requires_username: bool
) -> None:
    """On any input, validate_capture returns normalised fields or raises RejectedCapture."""
    profile = fields(email, username, legacy_id)
    try:
        got = validate_capture(profile, requires_username=requires_username)
    except RejectedCapture as exc:
        assert exc.reason in {"no_email", "bad_email", "no_username", "bad_username"}
        return
    assert got.email is not None and got.email == normalise_identifier(got.email)
    assert got.username is None or got.username == normalise_identifier(got.username)
    assert not requires_username or got.username
    # Accepted fields are accepted again unchanged: storing them never changes them.
    assert validate_capture(got, requires_username=requires_username) == got


@given(local=st.from_regex(r"[a-z0-9._+-]{1,40}", fullmatch=True))
def test_plain_addresses_are_accepted(local: str) -> None:
    """Any ordinary local part at a dotted domain is a valid email."""
    got = validate_capture(fields(f"{local}@example.com"), requires_username=False)
    assert got.email == f"{local}@example.com"
