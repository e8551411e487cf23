"""Python values as both backends write them: identifiers and profiles."""

from __future__ import annotations

from typing import Any

import orjson

from store.errors import RejectedCapture
from store.validation import normalise_identifier


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
