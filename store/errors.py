"""Errors raised by the store package.

    StoreError                  root; never raised itself
    ├── UserExists              an insert or update collides with a unique email/username/legacy id
    ├── UserNotFound            no user has that id (also a LookupError)
    ├── StoreUnavailable        the database cannot be reached or answered with an error
    ├── StoreNotFound           a command that works on an existing store found none there
    ├── RejectedCapture         validation refused a profile; ``reason`` says why
    └── PasswordError           root of password failures; never raised itself
        ├── InvalidPassword     the password does not match the stored hash
        └── Overloaded          the hashing pool's queue is full; retry later
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error the store package raises."""


class UserExists(StoreError):
    """A unique field (``email``, ``username`` or ``legacy_id``) is already taken."""

    def __init__(self, field: str) -> None:
        super().__init__(f"a user with this {field} already exists")
        self.field = field


class StoreNotFound(StoreError):
    """No store exists at the URL (a mistyped path or schema), and this use must not create one."""


class UserNotFound(StoreError, LookupError):
    """No stored user has the given id."""


class StoreUnavailable(StoreError):
    """The backing database failed or cannot be reached."""


class RejectedCapture(StoreError):
    """A captured or submitted profile failed validation."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PasswordError(StoreError):
    """Root of password hashing and verification failures."""


class InvalidPassword(PasswordError):
    """The password does not match."""


class Overloaded(PasswordError):
    """Too many hash operations are queued; the caller should shed load."""
