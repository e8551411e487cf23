"""The webhook signature, so that a receiver can tell authshim's POSTs from anyone else's.

Header ``X-Authshim-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
HMAC-SHA256(secret, ``<t>`` + "." + raw body). A receiver recomputes it over the body bytes
as they arrived, compares in constant time and refuses a ``t`` older than a few minutes (a
replay). ``verify`` below is that check, usable by a Python receiver as is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Authshim-Signature"
TOLERANCE = 300.0


def sign(secret: str, body: bytes, *, now: float | None = None) -> str:
    """The ``X-Authshim-Signature`` value for ``body`` sent now."""
    stamp = str(int(time.time() if now is None else now))
    return f"t={stamp},v1={_mac(secret, stamp, body)}"


def verify(
    secret: str, header: str, body: bytes, *, now: float | None = None,
    tolerance: float = TOLERANCE,
) -> bool:  # fmt: skip
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    # SECURITY: constant-time comparison of the MAC.
    return hmac.compare_digest(given.encode(), _mac(secret, stamp, body).encode())


def _mac(secret: str, stamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
