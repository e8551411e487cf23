"""ASP.NET Identity password hashes (Microsoft.AspNetCore.Identity.PasswordHasher): base64 of
a format byte and PBKDF2 output.

- v2 (Identity 2, ASP.NET Membership's successor): ``0x00 | salt(16) | subkey(32)``,
  PBKDF2-HMAC-SHA1, 1000 iterations.
- v3: ``0x01 | prf(u32 BE) | iterations(u32 BE) | salt length(u32 BE) | salt | subkey``;
  prf 0 = SHA-1, 1 = SHA-256, 2 = SHA-512.
"""

from __future__ import annotations

import hashlib
import re

from store.hashes.common import MAX_PBKDF2_ITERATIONS, Verifier, b64decode, equal

_PRF = {0: "sha1", 1: "sha256", 2: "sha512"}
_BASE64 = re.compile(r"^[A-Za-z0-9+/]{60,}={0,2}$")


def aspnet_check(stored: str, password: bytes) -> bool:
    """Decode the blob and recompute its PBKDF2 subkey."""
    raw = b64decode(stored)
    if raw[:1] == b"\x00" and len(raw) == 49:
        salt, subkey = raw[1:17], raw[17:]
        computed = hashlib.pbkdf2_hmac("sha1", password, salt, 1000, len(subkey))
        return equal(computed, subkey)
    if raw[:1] == b"\x01" and len(raw) >= 13:
        prf = int.from_bytes(raw[1:5], "big")
        iterations = int.from_bytes(raw[5:9], "big")
        salt_length = int.from_bytes(raw[9:13], "big")
        salt, subkey = raw[13 : 13 + salt_length], raw[13 + salt_length :]
        if prf not in _PRF or not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
            raise ValueError("unknown PRF or iteration count out of range")
        if salt_length < 8 or len(subkey) < 16:
            raise ValueError("salt or subkey too short")
        computed = hashlib.pbkdf2_hmac(_PRF[prf], password, salt, iterations, len(subkey))
        return equal(computed, subkey)
    raise ValueError("not an ASP.NET Identity v2 or v3 hash")


def _looks_like(stored: str) -> bool:
    if not _BASE64.match(stored):
        return False
    try:
        head = b64decode(stored)[:1]
    except ValueError:
        return False
    return head in (b"\x00", b"\x01")


ASPNET = Verifier("aspnet_identity", _looks_like, aspnet_check)
VERIFIERS = (ASPNET,)
