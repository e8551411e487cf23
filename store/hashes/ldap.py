"""LDAP userPassword schemes (RFC 2307 and OpenLDAP's slappasswd): ``{SHA}``, ``{SSHA}``,
``{SHA256}``, ``{SSHA256}``, ``{SHA512}``, ``{SSHA512}``, ``{MD5}``, ``{SMD5}``: base64 of the
digest of password + salt, the salt appended to the digest."""

from __future__ import annotations

import hashlib

from store.hashes.common import Verifier, b64decode, equal

_SCHEMES = {
    "{SHA}": ("sha1", False), "{SSHA}": ("sha1", True),
    "{SHA256}": ("sha256", False), "{SSHA256}": ("sha256", True),
    "{SHA512}": ("sha512", False), "{SSHA512}": ("sha512", True),
    "{MD5}": ("md5", False), "{SMD5}": ("md5", True),
}  # fmt: skip


def ldap_check(stored: str, password: bytes) -> bool:
    """Split the scheme, decode the base64, recompute the (salted) digest."""
    scheme, _, encoded = stored.partition("}")
    algorithm, salted = _SCHEMES[scheme.upper() + "}"]
    raw = b64decode(encoded)
    size = hashlib.new(algorithm).digest_size
    if len(raw) < size or (not salted and len(raw) != size) or (salted and len(raw) == size):
        raise ValueError("digest length does not fit the scheme")
    digest, salt = raw[:size], raw[size:]
    return equal(hashlib.new(algorithm, password + salt).digest(), digest)


LDAP = Verifier(
    "ldap",
    lambda s: s.startswith("{") and s.partition("}")[0].upper() + "}" in _SCHEMES,
    ldap_check,
)
VERIFIERS = (LDAP,)
