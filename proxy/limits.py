"""Brute-force protection and rate limits, on the store's shared attempt counters.

Login attempts are counted when they start, not when they fail: a burst of parallel guesses
cannot race past the threshold, and the legacy app never sees more attempts than this allows.
A success takes its attempt back (clears the account's count, refunds the address's), and so
does an attempt nobody judged (the legacy app down, the argon2 pool full).

While the store is down, attempts are counted in this process instead (the same rule, not
shared with other replicas), so that unmigrated users can still reach the legacy app and it
still sees no more than the limit allows per replica.

Counter keys are HMACs under a key derived from the session secret, so the store never holds
an identifier, an address, or a password mistyped into a username field, in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from aiohttp import web

from proxy import log
from proxy.answers import problem
from proxy.config import LimitsConfig
from proxy.errors import Throttled
from proxy.headers import is_trusted
from proxy.locks import KeyedLocks
from proxy.writebehind import WriteBehind
from store.base import Store
from store.errors import StoreError
from store.limits import LimitAttempt, LimitDecision, LimitRule, LimitState, advance
from store.validation import identifier_key

PURGE_EVERY = 600.0  # seconds between deletions of finished counters
LOCAL_MAX = 100_000  # counters kept in memory while the store is down, before old ones go
RATE_KINDS = ("reset", "signup")


@dataclass(frozen=True, slots=True)
class LoginTicket:
    """The counted attempts of one login, to settle once its outcome is known."""

    account_key: str
    ip_key: str


def client_ip(request: web.BaseRequest, trusted_proxies: tuple[str, ...]) -> str:
    """The client's address: the peer, or the nearest untrusted hop a trusted proxy reported."""
    peer = request.remote or ""
    if not is_trusted(peer, trusted_proxies):
        return peer  # SECURITY: X-Forwarded-For is the client's to write; believe only proxies
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not is_trusted(hop, trusted_proxies):
            return hop
    return peer


def address_group(ip: str) -> str:
    """The unit an address is limited by: an IPv4 address, or the /64 an IPv6 one is in."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]  # not an address (a unix socket): limited as one opaque client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # SECURITY: one host gets a whole /64; counting per address would give it 2**64 tries.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def throttled_answer(exc: Throttled) -> web.Response:
    """429 with ``Retry-After`` in whole seconds (never 0, so a client does wait)."""
    retry = str(max(1, math.ceil(exc.retry_after)))
    return problem(429, "too many attempts; retry later", headers={"Retry-After": retry})


class Limiter:
    """Counts attempts per key in the store; raises ``Throttled`` past a limit."""

    def __init__(
        self,
        store: Store | None,
        config: LimitsConfig,
        secret: str,
        *,
        clock: Callable[[], float] = time.time,
        username_case: str = "lower",
    ) -> None:
        self._store = store
        self._case = username_case
        self.config = config
        self.enabled = config.enabled and store is not None
        self._key = hashlib.sha256(b"authshim-limits\x00" + secret.encode()).digest()
        self._clock = clock
        # One attempt per key at a time in this process: the store's compare-and-swap then
        # only races other processes, and a burst never exhausts its retries.
        self._locks = KeyedLocks()
        # SECURITY: settling only ever takes attempts back, so a settlement that lands late, or
        # is lost in a crash, leaves the limit stricter for a moment, never looser.
        self.settlements: WriteBehind[tuple[LoginTicket, bool]] = WriteBehind(
            "limits.settle", self._settle
        )
        self._local: dict[str, LimitState] = {}
        c = config
        self._login_account = LimitRule(
            c.login_account_ip, c.login_window, c.login_block, c.login_block_max
        )
        self._login_ip = LimitRule(c.login_ip, c.login_window, c.login_block, c.login_block_max)
        self._rates = {
            "reset.ip": LimitRule(c.reset_ip, c.rate_window),
            "reset.address": LimitRule(c.reset_address, c.rate_window),
            "signup.ip": LimitRule(c.signup_ip, c.rate_window),
            "signup.address": LimitRule(c.signup_address, c.rate_window),
        }

    @classmethod
    def disabled(cls) -> Limiter:
        """A limiter that allows everything (no store): for apps built without one."""
        return cls(None, LimitsConfig(enabled=False), "")

    def _hash(self, *parts: str) -> str:
        message = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:40]

    def subject(self, identifier: str) -> str:
        """The hashed account an identifier names: its own, for a user authshim does not hold
        (the legacy app's email and username are two subjects then)."""
        # Casey and casey are one account under "first_letter", CASEY is another (issue 15).
        return self._hash("subject", identifier_key(identifier, self._case))

    def user_subject(self, user_id: str) -> str:
        """The hashed account of a stored user: one for their email and username alike."""
        return self._hash("user", user_id)

    def _store_or_none(self) -> Store | None:
        return self._store if self.enabled else None

    async def login_attempt(
        self, identifier: str, ip: str, *, user_id: str | None = None
    ) -> LoginTicket:
        """Count a login attempt on ``identifier`` (the stored user ``user_id``, when it names
        one) from ``ip`` before any password is judged.

        Raises:
            Throttled: the address, or this account from this address, is blocked.
        """
        group = address_group(ip)
        # SECURITY: a stored user's email and username share one count, or each would give
        # an attacker the limit's worth of guesses again.
        subject = self.user_subject(user_id) if user_id else self.subject(identifier)
        ticket = LoginTicket(
            self._hash("login.account", subject, group), self._hash("login.ip", group)
        )
        store = self._store_or_none()
        if store is None:
            return ticket
        # The address's attempt and the account's, counted together: both or, when either is
        # refused, neither (one store call per login).
        decision = await self._attempt_all(store, [
            LimitAttempt(ticket.ip_key, self._login_ip),
            LimitAttempt(ticket.account_key, self._login_account, subject),
        ])  # fmt: skip
        if not decision.allowed:
            raise Throttled(decision.retry_after)
        return ticket

    async def _attempt_all(self, store: Store, attempts: list[LimitAttempt]) -> LimitDecision:
        now = self._clock()
        try:
            return await store.limit_attempts(attempts, now=now)
        except StoreError as exc:
            log.event("limits.counted_locally", error=type(exc).__name__)
        # SECURITY: the store being down must not lift the limit: count in this process.
        counted: list[str] = []
        decision = LimitDecision(True, 0.0, 0)
        for attempt in attempts:
            decision = self._local_attempt(attempt.key, attempt.rule, now)
            if not decision.allowed:
                for key in counted:
                    self._local_refund(key)
                break
            counted.append(attempt.key)
        return decision

    async def _attempt(
        self, store: Store, key: str, rule: LimitRule, subject: str | None = None
    ) -> LimitDecision:
        async with self._locks.hold(key):
            now = self._clock()
            try:
                return await store.limit_attempt(key, rule, now=now, subject=subject)
            except StoreError as exc:
                log.event("limits.counted_locally", error=type(exc).__name__)
                return self._local_attempt(key, rule, now)

    def _local_attempt(self, key: str, rule: LimitRule, now: float) -> LimitDecision:
        # SECURITY: the store being down must not lift the limit: count in this process.
        new, decision = advance(self._local.get(key), rule, now)
        if new is not None:
            if len(self._local) >= LOCAL_MAX:
                self._local.pop(next(iter(self._local)))  # the oldest counter goes first
            self._local[key] = new
        return decision

    def _local_refund(self, key: str, *, clear: bool = False) -> None:
        state = self._local.get(key)
        if state is None:
            return
        if clear or state.count <= 1:
            del self._local[key]
        else:
            self._local[key] = replace(state, count=state.count - 1)

    def login_succeeded(self, ticket: LoginTicket) -> None:
        """The login was right: the account's count starts again, the address's attempt is
        taken back (in the store behind the answer: see ``settlements``)."""
        if self._store_or_none():
            self.settlements.add((ticket, True))
            self._local_refund(ticket.account_key, clear=True)
            self._local_refund(ticket.ip_key)

    def login_unjudged(self, ticket: LoginTicket) -> None:
        """Nobody judged the password (upstream down, pool full): take the attempt back."""
        if self._store_or_none():
            self.settlements.add((ticket, False))
            self._local_refund(ticket.account_key)
            self._local_refund(ticket.ip_key)

    async def _settle(self, batch: list[tuple[LoginTicket, bool]]) -> None:
        """Settle a batch of logins' attempts in one store transaction."""
        if (store := self._store_or_none()) is None:
            return
        clear = [ticket.account_key for ticket, succeeded in batch if succeeded]
        refund = [ticket.ip_key for ticket, _ in batch]
        refund += [ticket.account_key for ticket, succeeded in batch if not succeeded]
        await store.limit_settle(clear=clear, refund=refund)

    async def check(self, kind: str, *, ip: str, address: str | None = None) -> None:
        """Count one ``kind`` request ("reset" or "signup") from ``ip`` for ``address``.

        Raises:
            Throttled: the address or the email address has had its share this window.
        """
        if kind not in RATE_KINDS:
            raise ValueError(f"unknown rate limit kind {kind!r}")
        store = self._store_or_none()
        if store is None:
            return
        group = address_group(ip)
        decision = await self._attempt(
            store, self._hash(f"{kind}.ip", group), self._rates[f"{kind}.ip"]
        )
        if decision.allowed and address:
            # SECURITY: the same counter whether or not anyone has this address (enumeration).
            subject = self.subject(address)
            key = self._hash(f"{kind}.address", subject)
            decision = await self._attempt(store, key, self._rates[f"{kind}.address"])
        if not decision.allowed:
            raise Throttled(decision.retry_after)

    async def clear_user(
        self, identifiers: Iterable[str | None], *, user_id: str | None = None
    ) -> None:
        """Clear every login counter of a user (a reset or an admin unblock): all addresses."""
        if (store := self._store_or_none()) is None:
            return
        subjects = [self.subject(i) for i in identifiers if i]
        if user_id:
            subjects.append(self.user_subject(user_id))
        for subject in subjects:
            await store.limit_clear(subject=subject)

    async def run(self) -> None:
        """Delete finished counters every ``PURGE_EVERY`` seconds until cancelled."""
        c = self.config
        keep = max(c.login_window, c.rate_window) + c.login_block_max
        while (store := self._store_or_none()) is not None:
            await asyncio.sleep(PURGE_EVERY)
            with contextlib.suppress(StoreError):
                await store.limit_purge(self._clock() - keep)
