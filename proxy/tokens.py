"""Reset tokens: 256 random bits, mailed once, stored only as a SHA-256.

The outbox must not hold a live token either, so a mail row carries a random seed and the
token is ``HMAC-SHA256(key, seed)`` with a key derived from the session secret: the mail
worker (on any replica) can rebuild the link, and the database alone cannot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url without padding


def token_key(secret: str) -> bytes:
    """The key tokens are derived with, from the session secret (its own domain)."""
    return hashlib.sha256(b"authshim-reset-token\x00" + secret.encode()).digest()


def new_seed() -> str:
    """A fresh random seed (256 bits, hex) for one token."""
    return secrets.token_hex(32)


def derive_token(key: bytes, seed: str) -> str:
    """The token a seed stands for: what the mailed link carries."""
    digest = hmac.new(key, bytes.fromhex(seed), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def well_formed(token: str) -> bool:
    """Whether ``token`` has the shape of one of ours (anything else is not looked up)."""
    return bool(_TOKEN_SHAPE.match(token))


def same_hash(stored: str, token: str) -> bool:
    """Compare a stored hash with a token's, in constant time."""
    # SECURITY: constant time, although both sides are hashes already.
    return hmac.compare_digest(stored, hash_token(token))
