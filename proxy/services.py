"""What every handler needs, built once per app: the parts a request's story is told with."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.background import Background
from proxy.config import Config
from proxy.forward import Forwarder
from proxy.known import KnownIdentifiers
from proxy.legacy_db.judge import DatabaseJudge
from proxy.limits import Limiter
from proxy.locks import KeyedLocks
from proxy.lookup import Lookup
from proxy.mail import Mailer
from proxy.modes import ModeWatcher
from proxy.readiness import LoginActivity
from proxy.resets import ResetQueue
from proxy.rules.engine import RuleEngine
from proxy.rules.weak import WeakPasswords
from proxy.sessions import UNKNOWN, Sessions, Unknown, identity_headers
from proxy.stats import Counters
from proxy.writebehind import WriteBehind
from store.base import Store, User
from store.passwords import PasswordPool


@dataclass(slots=True)
class Services:
    config: Config
    store: Store
    passwords: PasswordPool
    forwarder: Forwarder
    sessions: Sessions
    counters: Counters
    modes: ModeWatcher
    # Successful logins' counts, (user id, when), written behind the answers in batches.
    login_records: WriteBehind[tuple[str, float]]
    capture_locks: KeyedLocks = field(default_factory=KeyedLocks)
    # Who has migrated, for logins while the store is down (replicas issue); never ready
    # unless create_app's loader filled it, and then every such login gets 503: fail safe.
    known: KnownIdentifiers = field(default_factory=KnownIdentifiers)
    # Brute force and rate limits (hardening issue); create_app passes the store-backed one.
    limits: Limiter = field(default_factory=Limiter.disabled)
    # Accepted logins, for the cut-over readiness figure (admin issue).
    login_activity: LoginActivity = field(default_factory=LoginActivity)
    # Reset, sign-up, look-up (reset/sign-up issue): None when the section is not configured.
    lookup: Lookup | None = None
    mailer: Mailer | None = None
    # Reset requests, queued before they are answered (hardening issue); None without [reset].
    resets: ResetQueue | None = None
    background: Background = field(default_factory=Background)
    # The operator's [[rules]] (issue 16): None when none is configured.
    rules: RuleEngine | None = None
    weak: WeakPasswords = field(default_factory=WeakPasswords)  # [policy] judged at capture
    # judge = "database" logins (issue 17): None without [legacy_db].
    db_judge: DatabaseJudge | None = None

    @property
    def cutover(self) -> bool:
        return self.modes.current == "cutover"

    def identity(self, user: User | None) -> dict[str, str]:
        """The identity headers the upstream gets for ``user`` (none without a session)."""
        if user is None:
            return {}
        config = self.config
        headers = identity_headers(user, config.identity, config.profile, config.identity_prefix)
        if self.rules is not None:
            apply_identity(headers, self.rules.identity_for(user.id))
        return headers

    async def session_user(self, cookies: dict[str, str] | None) -> User | None:
        """The user whose valid session cookie the request carries, if any."""
        if not cookies:
            return None
        user = await self.sessions.user(cookies.get(self.config.session.cookie))
        if user is not None and self.rules is not None:
            # The rules' identity values, re-evaluated at most every ttl; a deny drops them.
            return user if await self.rules.session(user, self.modes.current) else None
        return user

    def session_user_now(self, cookie_value: str | None) -> User | Unknown | None:
        """``session_user()`` of the session cookie's value without waiting: ``UNKNOWN`` when
        the store or the rules must be asked first (then await ``session_user``)."""
        user = self.sessions.user_now(cookie_value)
        if user is None or user is UNKNOWN or self.rules is None:
            return user
        allowed = self.rules.session_now(user)
        return UNKNOWN if allowed is None else user if allowed else None


def apply_identity(headers: dict[str, str], values: dict[str, str | None]) -> None:
    """Set (or, for None, remove) the rules' identity values over the configured headers,
    whatever the case either is written in."""
    for name, value in values.items():
        for existing in [h for h in headers if h.lower() == name.lower()]:
            del headers[existing]
        if value is not None:
            headers[name] = value
