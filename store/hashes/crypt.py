"""glibc crypt's ``$1$`` (MD5-crypt), ``$5$`` (SHA-256-crypt) and ``$6$`` (SHA-512-crypt), in
pure Python after the published algorithms (PHK's md5crypt; Drepper's "Unix crypt using
SHA-256 and SHA-512"), since the ``crypt`` module is deprecated and gone in Python 3.13."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from store.hashes.common import Verifier, equal

ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MAX_ROUNDS = 1_000_000  # a pure-Python round costs ~2 us: more would hold a thread for seconds

_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54),
    (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60),
    (40, 61, 19), (62, 20, 41),
)  # fmt: skip
_MD5_ORDER = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


def _to64(value: int, n: int) -> str:
    out = []
    for _ in range(n):
        out.append(ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def _encode(digest: bytes, order: tuple[tuple[int, int, int], ...], tail: str) -> str:
    out = [_to64((digest[a] << 16) | (digest[b] << 8) | digest[c], 4) for a, b, c in order]
    return "".join(out) + tail


def md5_crypt(password: bytes, salt: bytes) -> str:
    """The 22-character MD5-crypt digest of ``password`` with ``salt`` (at most 8 bytes)."""
    salt = salt[:8]
    md5: Callable[[bytes], bytes] = lambda b: hashlib.md5(b).digest()  # noqa: E731, S324
    alternate = md5(password + salt + password)
    ctx = password + b"$1$" + salt
    for left in range(len(password), 0, -16):
        ctx += alternate[: min(16, left)]
    i = len(password)
    while i:
        ctx += b"\0" if i & 1 else password[:1]
        i >>= 1
    final = md5(ctx)
    for i in range(1000):
        c = password if i & 1 else final
        if i % 3:
            c += salt
        if i % 7:
            c += password
        c += final if i & 1 else password
        final = md5(c)
    return _encode(final, _MD5_ORDER, _to64(final[11], 2))


def sha_crypt(password: bytes, salt: bytes, rounds: int, algorithm: str) -> str:
    """The SHA-crypt digest (43 or 86 characters) of ``password``."""
    salt = salt[:16]
    h: Callable[[bytes], bytes] = lambda b: hashlib.new(algorithm, b).digest()  # noqa: E731
    size = hashlib.new(algorithm).digest_size
    n = len(password)
    b = h(password + salt + password)
    a = password + salt + (b * (n // size + 1))[:n]
    i = n
    while i:
        a += b if i & 1 else password
        i >>= 1
    a = h(a)
    p = (h(password * n) * (n // size + 1))[:n]
    s = (h(salt * (16 + a[0])) * (len(salt) // size + 1))[: len(salt)]
    c = a
    for i in range(rounds):
        d = p if i & 1 else c
        if i % 3:
            d += s
        if i % 7:
            d += p
        d += c if i & 1 else p
        c = h(d)
    if size == 32:
        return _encode(c, _SHA256_ORDER, _to64((c[31] << 8) | c[30], 3))
    return _encode(c, _SHA512_ORDER, _to64(c[63], 2))


def crypt_check(stored: str, password: bytes) -> bool:
    """Recompute ``$1$salt$..``, ``$5$[rounds=N$]salt$..`` or ``$6$..`` and compare."""
    scheme, rest = stored[:3], stored[3:]
    fields = rest.split("$")
    rounds = 5000
    if fields[0].startswith("rounds="):
        if scheme == "$1$":
            raise ValueError("MD5-crypt has no rounds")
        text = fields.pop(0)[len("rounds=") :]
        if not text.isdigit():
            raise ValueError("bad rounds")
        rounds = min(max(int(text), 1000), 999_999_999)
        if rounds > MAX_ROUNDS:
            raise ValueError(f"more than {MAX_ROUNDS} rounds")
    if len(fields) != 2:
        raise ValueError("not salt$digest")
    salt, digest = fields[0].encode("utf-8"), fields[1]
    if scheme == "$1$":
        computed = md5_crypt(password, salt)
    else:
        computed = sha_crypt(password, salt, rounds, "sha256" if scheme == "$5$" else "sha512")
    return equal(computed, digest)


MD5_CRYPT = Verifier("md5_crypt", lambda s: s.startswith("$1$"), crypt_check)
SHA256_CRYPT = Verifier("sha256_crypt", lambda s: s.startswith("$5$"), crypt_check)
SHA512_CRYPT = Verifier("sha512_crypt", lambda s: s.startswith("$6$"), crypt_check)
VERIFIERS = (MD5_CRYPT, SHA256_CRYPT, SHA512_CRYPT)
