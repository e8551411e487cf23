"""argon2 (``$argon2id$``, ``$argon2i$``, ``$argon2d$``) of any parameters, with argon2-cffi."""

from __future__ import annotations

from argon2.exceptions import VerifyMismatchError
from argon2.low_level import Type, verify_secret

from store.hashes.common import Verifier

_TYPES = {"$argon2id$": Type.ID, "$argon2i$": Type.I, "$argon2d$": Type.D}
MAX_MEMORY_KIB = 1 << 21  # 2 GiB: a crafted import row must not exhaust the host


def argon2_check(stored: str, password: bytes) -> bool:
    """argon2-cffi's verify of the PHC string, whatever its parameters (memory capped)."""
    kind = next((t for head, t in _TYPES.items() if stored.startswith(head)), None)
    if kind is None:
        raise ValueError("not an argon2 hash")
    for part in stored.split("$"):
        for item in part.split(","):
            if item.startswith("m=") and item[2:].isdigit() and int(item[2:]) > MAX_MEMORY_KIB:
                raise ValueError("argon2 memory cost too high")
    try:
        return verify_secret(stored.encode("ascii"), password, kind)
    except VerifyMismatchError:
        return False


ARGON2 = Verifier("argon2", lambda s: s.startswith(tuple(_TYPES)), argon2_check)
VERIFIERS = (ARGON2,)
