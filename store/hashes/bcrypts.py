"""bcrypt (``$2a$``, ``$2b$``, ``$2y$``) and WordPress 6.8's ``$wp$2y$`` (bcrypt of the
base64 HMAC-SHA384 of the password, key ``wp-sha384``), with pyca ``bcrypt``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import bcrypt

from store.hashes.common import Verifier

_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
MAX_BCRYPT = 72  # bytes bcrypt reads; PHP and bcrypt < 5 ignore the rest, bcrypt 5 refuses


def bcrypt_matches(stored: str) -> bool:
    """Whether ``stored`` is a modular-crypt bcrypt hash."""
    return _BCRYPT.match(stored) is not None


def bcrypt_check(stored: str, password: bytes) -> bool:
    """bcrypt's own constant-time check; ``$2y$`` (PHP) is ``$2b$`` under another name."""
    if not bcrypt_matches(stored):
        raise ValueError("not a bcrypt hash")
    normalised = "$2b$" + stored[4:] if stored.startswith("$2y$") else stored
    return bcrypt.checkpw(password[:MAX_BCRYPT], normalised.encode("ascii"))


def wordpress_prehash(password: bytes) -> bytes:
    """What WordPress 6.8 gives bcrypt: base64(HMAC-SHA384(key "wp-sha384", password))."""
    return base64.b64encode(hmac.new(b"wp-sha384", password, hashlib.sha384).digest())


def wordpress_check(stored: str, password: bytes) -> bool:
    """``$wp$2y$..``: the bcrypt hash after ``$wp``, of the pre-hashed password."""
    return bcrypt_check(stored[3:], wordpress_prehash(password))


BCRYPT = Verifier("bcrypt", bcrypt_matches, bcrypt_check)
WORDPRESS = Verifier(
    "wordpress_bcrypt",
    lambda s: s.startswith("$wp$") and bcrypt_matches(s[3:]),
    wordpress_check,
)
VERIFIERS = (WORDPRESS, BCRYPT)
