"""The password policy: what a password set through authshim must be, checked on every route."""

from __future__ import annotations

from proxy.config import PolicyConfig
from proxy.errors import WeakPassword


def check_password(password: str, policy: PolicyConfig) -> None:
    """Return when ``password`` fits the policy.

    Raises:
        WeakPassword: it is too short or too long; the message says which and the limit.
    """
    # Characters, not bytes: what a person counts when a form says "at least 8".
    if len(password) < policy.min_length:
        raise WeakPassword(f"the password must be at least {policy.min_length} characters long")
    if len(password) > policy.max_length:
        raise WeakPassword(f"the password must be at most {policy.max_length} characters long")
