"""Django's ``make_password`` forms: ``algorithm$...`` (django.contrib.auth.hashers)."""

from __future__ import annotations

import base64
import hashlib

from store.hashes.argon import argon2_check
from store.hashes.bcrypts import bcrypt_check
from store.hashes.common import MAX_PBKDF2_ITERATIONS, Verifier, equal, positive

MAX_SCRYPT_N = 1 << 20
_HEX = frozenset("0123456789abcdef")


def pbkdf2_check(stored: str, password: bytes) -> bool:
    """``pbkdf2_sha256$iterations$salt$base64`` (and ``pbkdf2_sha1$``)."""
    algorithm, iterations, salt, digest = stored.split("$")
    name = {"pbkdf2_sha256": "sha256", "pbkdf2_sha1": "sha1"}[algorithm]
    count = positive(iterations, limit=MAX_PBKDF2_ITERATIONS)
    computed = hashlib.pbkdf2_hmac(name, password, salt.encode(), count)
    return equal(base64.b64encode(computed), digest)


def bcrypt_sha256_check(stored: str, password: bytes) -> bool:
    """``bcrypt_sha256$$2b$..``: bcrypt of the SHA-256 hex of the password."""
    prehashed = hashlib.sha256(password).hexdigest().encode("ascii")
    return bcrypt_check(stored[len("bcrypt_sha256$") :], prehashed)


def bcrypt_plain_check(stored: str, password: bytes) -> bool:
    """``bcrypt$$2b$..``."""
    return bcrypt_check(stored[len("bcrypt$") :], password)


def argon2_django_check(stored: str, password: bytes) -> bool:
    """``argon2$argon2id$v=19$..``: the PHC string after ``argon2``."""
    return argon2_check(stored[len("argon2") :], password)


def scrypt_check(stored: str, password: bytes) -> bool:
    """``scrypt$n$salt$r$p$base64`` (Django 4.0+)."""
    _, n, salt, r, p, digest = stored.split("$")
    cost = positive(n, limit=MAX_SCRYPT_N)
    block, lanes = positive(r, limit=64), positive(p, limit=64)
    expected = base64.b64decode(digest)
    computed = hashlib.scrypt(
        password, salt=salt.encode(), n=cost, r=block, p=lanes,
        maxmem=128 * cost * block * lanes + (1 << 20), dklen=len(expected),
    )  # fmt: skip
    return equal(computed, expected)


def salted_digest_check(stored: str, password: bytes) -> bool:
    """``md5$salt$hex`` / ``sha1$salt$hex`` = H(salt + password); an empty salt is Django's
    unsalted_sha1 (``sha1$$hex``) and unsalted_md5 (``md5$$hex``)."""
    algorithm, salt, digest = stored.split("$")
    computed = hashlib.new(algorithm, salt.encode() + password).hexdigest()
    return equal(computed, digest)


def unsalted_md5_check(stored: str, password: bytes) -> bool:
    """Django's unsalted_md5 in its bare form: 32 hex digits."""
    return equal(hashlib.md5(password).hexdigest(), stored)  # noqa: S324


PBKDF2 = Verifier(
    "django_pbkdf2",
    lambda s: s.startswith(("pbkdf2_sha256$", "pbkdf2_sha1$")) and s.count("$") == 3,
    pbkdf2_check,
)
BCRYPT_SHA256 = Verifier(
    "django_bcrypt_sha256", lambda s: s.startswith("bcrypt_sha256$$2"), bcrypt_sha256_check
)
BCRYPT = Verifier("django_bcrypt", lambda s: s.startswith("bcrypt$$2"), bcrypt_plain_check)
ARGON2 = Verifier("django_argon2", lambda s: s.startswith("argon2$argon2"), argon2_django_check)
SCRYPT = Verifier(
    "django_scrypt", lambda s: s.startswith("scrypt$") and s.count("$") == 5, scrypt_check
)
SALTED = Verifier(
    "django_salted_digest",
    lambda s: s.startswith(("md5$", "sha1$")) and s.count("$") == 2,
    salted_digest_check,
)
UNSALTED_MD5 = Verifier(
    "django_unsalted_md5", lambda s: len(s) == 32 and set(s) <= _HEX, unsalted_md5_check
)
VERIFIERS = (PBKDF2, BCRYPT_SHA256, BCRYPT, ARGON2, SCRYPT, SALTED, UNSALTED_MD5)
