"""The ``[policy]`` judged at capture: a legacy password that is too short, or on the
operator's breached-password list, is captured all the same (the legacy app accepted it) and
must be changed at the next login.

The list file has one entry a line: a password, or its SHA-1 in hex (the form breached-password
corpora are published in); it is read once at start and kept as SHA-1 digests.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from proxy.config import CapturePolicy
from proxy.errors import ConfigError

_SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")


class WeakPasswords:
    """The capture policy, with the breached list loaded."""

    def __init__(self, policy: CapturePolicy | None = None) -> None:
        policy = policy or CapturePolicy()
        self.min_length = policy.min_length
        self._breached: frozenset[str] = (
            _load(policy.breached_list) if policy.breached_list else frozenset()
        )

    @property
    def active(self) -> bool:
        return self.min_length > 0 or bool(self._breached)

    def breached(self, password: str) -> bool:
        """Whether ``password`` is on the operator's list."""
        return bool(self._breached) and _sha1(password) in self._breached

    def weak(self, password: str) -> str | None:
        """Why ``password`` must be changed (``short`` or ``breached``), or None."""
        if len(password) < self.min_length:
            return "short"
        return "breached" if self.breached(password) else None


def _sha1(password: str) -> str:
    # SHA-1 only to match the published lists; the stored hash is argon2id as ever.
    return hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def _load(path: str) -> frozenset[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"policy.breached_list: cannot read {path}: {exc}"]) from None
    entries = (line.split(":", 1)[0].strip() if _SHA1.match(line[:40]) else line for line in lines)
    return frozenset(e.upper() if _SHA1.match(e) else _sha1(e) for e in entries if e)
