"""PBKDF2 and scrypt in PHC-style strings, as the two common writers spell them.

- passlib: ``$pbkdf2-sha256$29000$<ab64 salt>$<ab64 digest>`` (also ``$pbkdf2$`` = SHA-1,
  ``$pbkdf2-sha512$``), and ``$scrypt$ln=16,r=8,p=1$<b64 salt>$<b64 digest>``.
- RustCrypto ``password-hash`` / the PHC draft: ``$pbkdf2-sha256$i=600000,l=32$<B64>$<B64>``
  and ``$scrypt$ln=17,r=8,p=1$<B64>$<B64>``.
"""

from __future__ import annotations

import hashlib

from store.hashes.common import MAX_PBKDF2_ITERATIONS, Verifier, ab64decode, equal, positive

_PBKDF2 = {"$pbkdf2$": "sha1", "$pbkdf2-sha256$": "sha256", "$pbkdf2-sha512$": "sha512"}
MAX_SCRYPT_LOG2 = 20


def _params(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split(","))
    return {key: value for key, sep, value in pairs if sep}


def pbkdf2_check(stored: str, password: bytes) -> bool:
    """Recompute the PBKDF2 digest with the string's iterations, salt and length."""
    _, scheme, params, salt, digest = stored.split("$")
    algorithm = _PBKDF2[f"${scheme}$"]
    iterations = params if params.isdigit() else _params(params).get("i", "")
    count = positive(iterations, limit=MAX_PBKDF2_ITERATIONS)
    expected = ab64decode(digest)
    computed = hashlib.pbkdf2_hmac(algorithm, password, ab64decode(salt), count, len(expected))
    return equal(computed, expected)


def scrypt_check(stored: str, password: bytes) -> bool:
    """Recompute the scrypt digest with N = 2**ln, r and p."""
    _, _, params, salt, digest = stored.split("$")
    values = _params(params)
    log2 = positive(values.get("ln", ""), limit=MAX_SCRYPT_LOG2)
    r, p = positive(values.get("r", ""), limit=64), positive(values.get("p", ""), limit=64)
    expected = ab64decode(digest)
    n = 1 << log2
    computed = hashlib.scrypt(
        password, salt=ab64decode(salt), n=n, r=r, p=p,
        maxmem=128 * n * r * p + (1 << 20), dklen=len(expected),
    )  # fmt: skip
    return equal(computed, expected)


PBKDF2 = Verifier(
    "pbkdf2_phc",
    lambda s: s.startswith(tuple(_PBKDF2)) and s.count("$") == 4,
    pbkdf2_check,
)
SCRYPT = Verifier(
    "scrypt_phc", lambda s: s.startswith("$scrypt$") and s.count("$") == 4, scrypt_check
)
VERIFIERS = (PBKDF2, SCRYPT)
