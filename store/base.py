"""The Store protocol every backend implements, and the records it returns."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

SOURCES = ("login", "reset", "signup", "import", "admin")
MODES = ("migrate", "cutover")


def new_user_id() -> str:
    """Return a fresh, unguessable authshim user id."""
    return uuid.uuid4().hex


def utc_day(now: dt.datetime | None = None) -> str:
    """Return the UTC day (YYYY-MM-DD) counters are kept under."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user about to be stored; email and username are already normalised (lower-case)."""

    email: str | None
    username: str | None
    password_hash: str
    profile: dict[str, Any] = field(default_factory=dict)
    legacy_id: str | None = None
    source: str = "login"


@dataclass(frozen=True, slots=True)
class User:
    """A stored user. Times are UTC epoch seconds."""

    id: str
    legacy_id: str | None
    email: str | None
    username: str | None
    password_hash: str
    profile: dict[str, Any]
    source: str
    created_at: float
    last_login_at: float | None
    login_count: int
    blocked: bool
    session_epoch: int


class Store(Protocol):
    """What authshim keeps. Backends translate database errors to ``store.errors`` here."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Release connections."""

    async def find_user(self, identifier: str) -> User | None:
        """Return the user whose (lower-case) email or username equals ``identifier``."""

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with this authshim id."""

    async def insert_user(self, new: NewUser) -> User:
        """Store a new user; raise ``UserExists(field)`` when a unique field is taken."""

    async def record_login(self, user_id: str, *, new_hash: str | None = None) -> None:
        """Count a successful login; replace the hash when ``new_hash`` is given (rehash)."""

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Replace the hash and revoke every session; return the new session epoch."""

    async def revoke_sessions(self, user_id: str) -> int:
        """Bump the session epoch so that every issued session is refused; return it."""

    async def set_blocked(self, user_id: str, blocked: bool) -> None:
        """Block or unblock a user."""

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user; return whether one was removed."""

    async def get_setting(self, key: str) -> str | None:
        """Return a persisted setting (such as ``mode``)."""

    async def set_setting(self, key: str, value: str) -> None:
        """Persist a setting so that every replica sees it."""

    async def incr(self, name: str, n: int = 1, *, day: str | None = None) -> None:
        """Add ``n`` to the counter ``name`` of ``day`` (default today, UTC)."""

    async def counters(self, *, since: str | None = None) -> dict[tuple[str, str], int]:
        """Return ``{(day, name): value}`` for days on or after ``since``."""

    async def count_users(self) -> int:
        """Return how many users are stored."""
