"""The Store protocol every backend implements, and the records it returns."""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from store.limits import LimitAttempt, LimitDecision, LimitRule

SOURCES = ("login", "reset", "signup", "import", "admin")
MODES = ("migrate", "cutover")


def new_user_id() -> str:
    """Return a fresh, unguessable authshim user id."""
    return uuid.uuid4().hex


def new_sequential_user_id() -> str:
    """Return a fresh user id that sorts by creation time (as UUIDv7 does: 48 bits of
    milliseconds, then 80 random bits, so still unguessable): a bulk import then appends to
    the primary-key index instead of writing all over it (3.6x faster at 1M users)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def utc_day(now: dt.datetime | None = None) -> str:
    """Return the UTC day (YYYY-MM-DD) counters are kept under."""
    if now is not None:
        return now.strftime("%Y-%m-%d")
    second = int(time.time())
    if second != _today[0]:  # every login asks: formatted once a second
        _today[:] = [second, dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%d")]
    return str(_today[1])


_today: list[int | str] = [-1, ""]


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user about to be stored; the store normalises email (lower-case) and username (by
    its ``username_case``) again."""

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


# --- reset tokens, outbox, identity changes (reset/sign-up issue) ---
@dataclass(frozen=True, slots=True)
class NewResetToken:
    """A reset token about to be stored: only the SHA-256 of the mailed value is kept.

    ``user_id`` is None for a legacy user who has not migrated: ``profile`` and ``legacy_id``
    then hold what the legacy look-up returned. ``epoch`` is the user's session epoch.
    """

    token_hash: str
    email: str
    expires_at: float
    user_id: str | None = None
    epoch: int = 0
    legacy_id: str | None = None
    profile: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ResetToken:
    """A stored reset token. Times are UTC epoch seconds."""

    token_hash: str
    user_id: str | None
    email: str
    legacy_id: str | None
    profile: dict[str, Any] | None
    epoch: int
    created_at: float
    expires_at: float
    used_at: float | None


@dataclass(frozen=True, slots=True)
class NewMail:
    """A mail for the outbox: rendered by the worker from ``kind`` and ``data`` when sent."""

    kind: str
    recipient: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutboxMail:
    """A mail in the outbox, as a worker claimed it."""

    id: str
    kind: str
    recipient: str
    data: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    sent_at: float | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ResetRequest:
    """A queued reset request, as a worker claimed it (hardening issue)."""

    id: str
    email: str
    created_at: float
    claimed_until: float | None
    done_at: float | None


# --- end reset tokens, outbox, identity changes ---


# --- replicas (PostgreSQL issue) ---
@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A legacy login that waits for its last step (a second page): who, and the argon2id hash
    of the password the legacy app already accepted, until ``expires_at``."""

    identifier: str
    password_hash: str = field(repr=False)
    route: str
    expires_at: float


class Identifiers(NamedTuple):
    """What a login can be looked up by, for one user: enough to know who has migrated.

    ``username`` is the key the store finds the username by (``validation.username_key``)."""

    created_at: float
    id: str
    email: str | None
    username: str | None


class Store(Protocol):
    """What authshim keeps. Backends translate database errors to ``store.errors`` here."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Release connections."""

    # How usernames are folded into the key they are unique and found by (issue 15):
    # ``validation.USERNAME_CASES``; the store's recorded rule once opened, "lower" by default.
    username_case: str

    async def use_username_case(self, case: str) -> None:
        """Fold usernames by ``case`` from now on, and record it in the store.

        Raises:
            StoreUnavailable: users are stored under another rule (their keys would not
                match); the store keeps its rule.
        """

    async def find_user(self, identifier: str) -> User | None:
        """Return the user whose email (lower-case) or username key (``username_case``) is
        ``identifier``'s."""

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with this authshim id."""

    # --- replicas (PostgreSQL issue) ---
    async def identifiers_after(self, after: tuple[float, str], limit: int) -> list[Identifiers]:
        """Return up to ``limit`` users' identifiers created after ``after`` = (created_at, id).

        In (created_at, id) order, so that the last row is the cursor of the next page.
        """

    async def users_after(self, after_id: str, limit: int) -> list[User]:
        """Return up to ``limit`` whole users whose id sorts after ``after_id``, in id order."""

    async def upsert_users(self, users: Sequence[User]) -> None:
        """Store ``users`` exactly as given (ids, hashes, times, epochs), replacing same ids.

        Raises:
            UserExists: another id already holds one of their emails, usernames or legacy ids.
        """

    async def all_settings(self) -> dict[str, str]:
        """Return every persisted setting."""

    async def set_counters(self, values: Mapping[tuple[str, str], int]) -> None:
        """Set each ``(day, name)`` counter to its value (set, not add: a copy is repeatable)."""

    # --- end replicas ---

    async def insert_user(self, new: NewUser) -> User:
        """Store a new user; raise ``UserExists(field)`` when a unique field is taken."""

    # --- reset tokens, outbox, identity changes (reset/sign-up issue) ---
    async def insert_reset_token(self, token: NewResetToken) -> ResetToken:
        """Store a reset token (only its hash)."""

    async def find_reset_token(self, token_hash: str) -> ResetToken | None:
        """Return the token with this hash, used or expired alike."""

    async def use_reset_token(self, token_hash: str, *, now: float) -> ResetToken | None:
        """Use a live token once: mark it, and every other live token of its email or user,
        used; return it, or None when it is unknown, used or expired (also under a race)."""

    async def enqueue_mail(self, mail: NewMail, *, now: float) -> str:
        """Put a mail in the outbox, due at once; return its id."""

    async def claim_mail(self, *, now: float, lease: float, limit: int) -> list[OutboxMail]:
        """Lease up to ``limit`` due, unsent mails for ``lease`` seconds; another caller
        (another replica) gets none of them until the lease ends."""

    async def mark_mail_sent(self, mail_id: str, *, now: float) -> None:
        """Record that a claimed mail went out; its data (which can derive a link) is dropped."""

    async def mark_mail_failed(self, mail_id: str, *, error: str, retry_at: float) -> None:
        """Record a failed attempt; the mail is due again at ``retry_at`` (never dropped)."""

    async def count_pending_mail(self) -> int:
        """Return how many mails are not sent yet."""

    async def purge_reset_data(self, *, before: float) -> int:
        """Delete tokens that expired, mails that were sent and reset requests that were done
        before ``before``; return how many rows went."""

    async def queue_reset_request(self, email: str, *, now: float) -> str:
        """Durably queue a reset request for ``email`` (known or not); return its id."""

    async def claim_reset_requests(
        self, *, now: float, lease: float, limit: int
    ) -> list[ResetRequest]:
        """Lease up to ``limit`` queued requests that are not done, oldest first, for ``lease``
        seconds; another caller (another replica) gets none of them until the lease ends."""

    async def finish_reset_request(
        self,
        request_id: str,
        *,
        now: float,
        token: NewResetToken | None = None,
        mail: NewMail | None = None,
    ) -> bool:
        """Store ``token``, queue ``mail`` under the request's id and mark the request done
        (forgetting its email); return False, writing nothing, when it was done already.

        Finishing one request twice (a worker that lost its lease) queues at most one mail.
        """

    async def count_pending_reset_requests(self) -> int:
        """Return how many queued reset requests are not done yet."""

    async def update_identity(
        self,
        user_id: str,
        *,
        email: str | None,
        username: str | None,
        profile: dict[str, Any] | None = None,
    ) -> User:
        """Set a user's email and/or username (None leaves one as it is) and, when given, the
        profile, in one write; return the user.

        Raises:
            UserExists: another user holds the email or username.
            UserNotFound: no user has this id.
        """

    async def update_profile(self, user_id: str, profile: dict[str, Any]) -> User:
        """Replace a user's stored profile; raise ``UserNotFound`` when there is no such user."""

    # --- end reset tokens, outbox, identity changes ---

    async def record_login(self, user_id: str, *, new_hash: str | None = None) -> None:
        """Count a successful login; replace the hash when ``new_hash`` is given (rehash)."""

    async def record_logins(self, logins: Sequence[tuple[str, float]]) -> None:
        """Count successful logins, each ``(user id, when)``, in one transaction; unknown ids
        are skipped. The batch form of ``record_login`` without a rehash, written behind the
        answers (proxy/writebehind.py), and on SQLite without waiting for the disk."""

    # --- legacy hashes and the bulk import (issue 17) ---
    async def import_users(self, users: Sequence[NewUser]) -> tuple[int, int]:
        """Store a batch of imported users in one transaction; return (inserted, updated).

        A user is matched by legacy id (by email when it has none). A match is rewritten only
        when the import itself wrote it and it never logged in, had a password set or its
        sessions revoked here, and only when it changed; a new user that conflicts with any
        stored one (email, username, legacy id) is skipped. Running a batch twice changes
        nothing the second time.
        """

    async def upgrade_password(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace the hash with ``new_hash`` and count a login, only while it is still
        ``old_hash`` (a password set meanwhile wins); return whether it was replaced."""

    # --- end legacy hashes ---

    async def set_password(self, user_id: str, password_hash: str) -> int:
        """Replace the hash and revoke every session; return the new session epoch."""

    async def revoke_sessions(self, user_id: str) -> int:
        """Bump the session epoch so that every issued session is refused; return it."""

    async def revoke_session(self, user_id: str, session_id: str, *, expires_at: float) -> None:
        """Revoke one session of ``user_id`` (a logout) until ``expires_at``, when its cookie
        expires anyway; revocations already expired are purged in passing."""

    async def get_session_user(
        self, user_id: str, *, now: float
    ) -> tuple[User | None, frozenset[str]]:
        """Return the user with this id and the ids of its sessions revoked and not expired
        at ``now``, in one read: what a session check needs on a cache miss."""

    async def purge_revoked_sessions(self, *, before: float) -> int:
        """Delete the revocations that expired before ``before``; return how many went."""

    async def set_blocked(self, user_id: str, blocked: bool) -> None:
        """Block or unblock a user."""

    async def delete_user(self, user_id: str) -> bool:
        """Remove a user; return whether one was removed."""

    # --- brute force and rate limits (hardening issue) ---
    async def limit_attempt(
        self, key: str, rule: LimitRule, *, now: float, subject: str | None = None
    ) -> LimitDecision:
        """Count one attempt on ``key`` under ``rule`` atomically across replicas (a blocked
        key's attempt is refused and not counted); ``subject`` tags the account it is about."""

    async def limit_attempts(
        self, attempts: Sequence[LimitAttempt], *, now: float
    ) -> LimitDecision:
        """Count ``attempts`` together in one transaction: all, or none when one is refused
        (the first refusal is returned; else the last decision). One store call per login."""

    async def limit_settle(
        self, *, clear: Sequence[str] = (), refund: Sequence[str] = ()
    ) -> None:
        """Delete the counters ``clear``, then take one attempt back off ``refund``'s counters
        per time each is named, in one transaction (how a batch of logins' attempts is
        settled)."""

    async def limit_clear(self, keys: Sequence[str] = (), *, subject: str | None = None) -> int:
        """Delete the counters ``keys`` and every counter of ``subject``; return how many."""

    async def limit_purge(self, before: float) -> int:
        """Delete counters whose window began and whose block ended before ``before``."""

    # --- end brute force and rate limits ---

    async def pending_put(self, key_hash: str, pending: PendingLogin) -> None:
        """Keep a login that waits for its last step, under the hash of its cookie value."""

    async def pending_take(self, key_hash: str, *, now: float) -> PendingLogin | None:
        """Remove and return the unexpired pending login under ``key_hash`` (once only)."""

    async def pending_purge(self, *, now: float) -> int:
        """Delete the pending logins that expired (abandoned); return how many."""

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

    # --- admin queries (operations issue) ---
    async def list_users(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        after: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[User]:
        """Return up to ``limit`` users in (created_at, id) order, after the cursor ``after``.

        ``source`` keeps one source; ``since`` keeps users created (migrated) at or after it.
        """

    async def search_users(
        self,
        prefix: str,
        *,
        source: str | None = None,
        since: float | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> list[tuple[str, User]]:
        """Return up to ``limit`` ``(key, user)`` whose email or username starts with ``prefix``
        (normalised) or whose legacy id equals it, in (key, id) order after ``after``.

        ``key`` is what matched: the prefix itself for a legacy id, else the email or username.
        """

    async def count_by_source(self) -> dict[str, int]:
        """Return how many users each source (login, reset, signup, ...) brought in."""

    async def migrated_per_day(self, *, since: float) -> dict[str, int]:
        """Return ``{UTC day: users created that day}`` for users created at or after ``since``."""

    async def note_logins(self, day: str, entries: Sequence[tuple[str, bool]]) -> None:
        """Record that each ``(ident, migrated)`` logged in on ``day`` (later days win)."""

    async def login_readiness(self, *, since_day: str) -> tuple[int, int]:
        """Return ``(identifiers seen on or after since_day, how many of them were migrated)``."""

    async def prune_logins(self, *, before_day: str) -> int:
        """Forget identifiers last seen before ``before_day``; return how many were removed."""
