"""What every hash family shares: the ``Verifier`` record and constant-time helpers."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verifier:
    """One stored hash format: its name, how to recognise it, and how to check a password.

    ``check(stored, password)`` returns whether the UTF-8 ``password`` matches ``stored``;
    it raises ``ValueError`` (or a subclass) for a stored value it cannot read, and nothing
    for a wrong password.
    """

    name: str
    matches: Callable[[str], bool]
    check: Callable[[str, bytes], bool]


def equal(a: bytes | str, b: bytes | str) -> bool:
    """Constant-time equality of two byte strings (text is compared as UTF-8)."""
    # SECURITY: every digest comparison goes through compare_digest.
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def b64decode(text: str) -> bytes:
    """Standard or unpadded base64, strictly; raise ``ValueError`` when it is not."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64: {exc}") from None


def ab64decode(text: str) -> bytes:
    """passlib's "adapted" base64 ('.' for '+', no padding)."""
    return b64decode(text.replace(".", "+"))


def hexdecode(text: str) -> bytes:
    """Hex digits (either case); raise ``ValueError`` when they are not."""
    return bytes.fromhex(text)


def positive(text: str, *, limit: int) -> int:
    """A decimal cost parameter in 1..limit; refusing absurd costs keeps a crafted import
    row from tying up a pool thread for minutes."""
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    value = int(text)
    if not 1 <= value <= limit:
        raise ValueError(f"cost {value} outside 1..{limit}")
    return value


MAX_PBKDF2_ITERATIONS = 10_000_000
