"""Plain and salted digests as Auth0's bulk import describes them (``custom_password_hash``
with algorithm md5, sha1, sha256 or sha512, a salt before or after the password), kept as
``$digest$ALGORITHM$prefix|suffix$<base64 salt>$<hex digest>``."""

from __future__ import annotations

import base64
import hashlib

from store.hashes.common import Verifier, b64decode, equal

ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
PREFIX = "$digest$"


def stored_form(algorithm: str, digest: bytes, salt: bytes = b"", position: str = "prefix") -> str:
    """The stored form of one digest; ``position`` says where the salt goes."""
    if algorithm not in ALGORITHMS or position not in ("prefix", "suffix"):
        raise ValueError("unknown digest algorithm or salt position")
    encoded = base64.b64encode(salt).decode("ascii")
    return f"{PREFIX}{algorithm}${position}${encoded}${digest.hex()}"


def digest_check(stored: str, password: bytes) -> bool:
    """Recompute H(salt + password) or H(password + salt) and compare."""
    algorithm, position, salt_text, digest = stored[len(PREFIX) :].split("$")
    if algorithm not in ALGORITHMS:
        raise ValueError("unknown digest algorithm")
    salt = b64decode(salt_text)
    data = salt + password if position == "prefix" else password + salt
    if position not in ("prefix", "suffix"):
        raise ValueError("unknown salt position")
    return equal(hashlib.new(algorithm, data).hexdigest(), digest.lower())


DIGEST = Verifier(
    "digest", lambda s: s.startswith(PREFIX) and s.count("$") == 5, digest_check
)
VERIFIERS = (DIGEST,)
