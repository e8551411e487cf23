"""phpass portable hashes (``$P$``, ``$H$``: WordPress up to 6.7, phpBB 3, Joomla 2.5+) and
Drupal 7's ``$S$`` (the same construction over SHA-512), with its ``U$`` form for users
Drupal imported from Drupal 6 (the phpass hash of the MD5 hex of the password).

The construction, from phpass 0.3's ``CryptPrivate`` and Drupal 7's ``_password_crypt``:
``h = H(salt + password)``, then ``2**log2`` times ``h = H(h + password)``, then the setting
(12 characters) followed by phpass's own base64 of ``h``; Drupal cuts the result at 55.
"""

from __future__ import annotations

import hashlib

from store.hashes.common import Verifier, equal

ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DRUPAL_HASH_LENGTH = 55
MAX_LOG2 = 30  # phpass and Drupal both refuse more


def encode64(data: bytes) -> str:
    """phpass's base64: little-endian groups of three bytes, ITOA64 alphabet."""
    out = []
    for start in range(0, len(data), 3):
        chunk = data[start : start + 3]
        value = int.from_bytes(chunk, "little")
        for n in range(len(chunk) + 1):
            out.append(ITOA64[(value >> (6 * n)) & 0x3F])
    return "".join(out)


def crypt_private(password: bytes, setting: str, algorithm: str) -> str:
    """Recompute a phpass-style hash from its 12-character setting."""
    log2 = ITOA64.find(setting[3])
    if not 7 <= log2 <= MAX_LOG2:
        raise ValueError("iteration count out of range")
    salt = setting[4:12].encode("ascii")
    if len(salt) != 8:
        raise ValueError("salt too short")
    digest = hashlib.new(algorithm, salt + password).digest()
    for _ in range(1 << log2):
        digest = hashlib.new(algorithm, digest + password).digest()
    return setting[:12] + encode64(digest)


def phpass_check(stored: str, password: bytes) -> bool:
    """``$P$``/``$H$``: MD5, iterated."""
    return equal(crypt_private(password, stored, "md5"), stored)


def drupal_check(stored: str, password: bytes) -> bool:
    """``$S$``: SHA-512, iterated, cut at 55 characters; ``U$S$``: of MD5(password) hex."""
    if stored.startswith("U"):
        stored, password = stored[1:], hashlib.md5(password).hexdigest().encode()  # noqa: S324
    algorithm = "sha512" if stored.startswith("$S$") else "md5"
    computed = crypt_private(password, stored, algorithm)[:DRUPAL_HASH_LENGTH]
    return equal(computed, stored)


PHPASS = Verifier(
    "phpass", lambda s: s.startswith(("$P$", "$H$")) and len(s) == 34, phpass_check
)
DRUPAL7 = Verifier(
    "drupal7",
    lambda s: (s.startswith("$S$") and len(s) == 55)
    or (s.startswith(("U$S$", "U$P$", "U$H$")) and len(s) in (35, 56)),
    drupal_check,
)
VERIFIERS = (PHPASS, DRUPAL7)
