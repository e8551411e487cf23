"""Who has migrated, known per process, so that logins fail safe while the store is down.

A migrated user must never be forwarded to the legacy app: it may still accept a password the
user has since changed here. So when the store cannot be asked, a login is answered 503 when
its identifier may belong to a migrated user, and forwarded (never captured) only when it
surely does not. "Surely" needs a set with no false negatives and little memory: a Bloom
filter over the normalised emails and usernames, about 1.2 MB per million identifiers at 1%
false positives (a false positive only costs that user a 503 during an outage).

The filter is loaded at start by paging through the store in creation order, then topped up
every few seconds with the users created since (by any replica), and at once with the
captures of this process.
"""

from __future__ import annotations

import asyncio
import math
import time

from proxy import log
from store.base import Store, User
from store.errors import StoreError
from store.validation import normalise_identifier, username_key

ERROR_RATE = 0.01
PAGE = 2000  # users per query
SLICE = 500  # users hashed between two yields to the event loop (~3 ms of CPU)
# Rows become visible at commit, a little after the created_at their replica stamped (longer
# when the insert was retried), and replica clocks drift: re-read this much history each time.
OVERLAP = 60.0
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0)  # a failed first load is retried, then every 5 s
_START = (float("-inf"), "")
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: a bijective mix


class BloomFilter:
    """A fixed-size Bloom filter of strings: no false negatives, ``error_rate`` positives."""

    def __init__(self, capacity: int, error_rate: float) -> None:
        self.capacity = max(capacity, 1)
        bits = math.ceil(-self.capacity * math.log(error_rate) / math.log(2) ** 2)
        self._bits = bytearray((bits + 7) // 8)
        self._m = len(self._bits) * 8
        self._k = max(1, round(self._m / self.capacity * math.log(2)))
        self.count = 0

    @property
    def nbytes(self) -> int:
        return len(self._bits)

    def _hashes(self, item: str) -> tuple[int, int]:
        # Kirsch-Mitzenmacher: two hashes give all k positions. str's own hash is SipHash
        # with a key random per process (the filter never leaves the process), cached on the
        # string and ten times cheaper than hashlib; the second is a multiplicative remix.
        h = hash(item) & _MASK64
        return h, ((h * _GOLDEN) & _MASK64) >> 1 | 1

    def add(self, item: str) -> None:
        # Plain loops over locals: this runs twice per user at load, a million times over.
        h, step = self._hashes(item)
        bits, m = self._bits, self._m
        for _ in range(self._k):
            pos = h % m
            bits[pos >> 3] |= 1 << (pos & 7)
            h += step
        self.count += 1

    def __contains__(self, item: str) -> bool:
        h, step = self._hashes(item)
        bits, m = self._bits, self._m
        for _ in range(self._k):
            pos = h % m
            if not bits[pos >> 3] & (1 << (pos & 7)):
                return False
            h += step
        return True


class KnownIdentifiers:
    """A growing Bloom filter of migrated identifiers, and whether it is loaded yet.

    When the filter holds more than it was sized for, a new layer twice as big takes the new
    identifiers (no rebuild, no pause); each later layer is twice as strict, so that the false
    positive rate stays under twice ``error_rate`` however far it grows.
    """

    def __init__(
        self, username_case: str = "lower", capacity: int = 1024, error_rate: float = ERROR_RATE
    ) -> None:
        # Emails are held lower-case, usernames as the store keys them (``Identifiers``).
        self._case = username_case
        self._error_rate = error_rate
        self._layers = [BloomFilter(capacity, error_rate)]
        self.ready = False  # until the first full load, nobody is surely unmigrated

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self._layers)

    @property
    def count(self) -> int:
        return sum(layer.count for layer in self._layers)

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` more identifiers in one layer (before a load)."""
        top = self._layers[-1]
        if capacity <= top.capacity - top.count:
            return
        fresh = BloomFilter(capacity, self._error_rate)
        # Captures may have come first: they stay in their layer, the load goes to the new one.
        self._layers = [fresh] if self.count == 0 else [*self._layers, fresh]

    def add(self, identifier: str | None) -> None:
        """Remember one stored (so already normalised) email or username."""
        if not identifier:
            return
        top = self._layers[-1]
        if top.count >= top.capacity:
            n = len(self._layers)
            top = BloomFilter(top.capacity * 2, self._error_rate / 2**n)
            self._layers.append(top)
        top.add(identifier)

    def ensure(self, identifier: str | None) -> bool:
        """Add ``identifier`` unless the filter already answers yes for it; return if added.

        Skipping is exact, not approximate: a filter that says yes for an identifier (even
        as a false positive) says so forever, so adding it could change no answer.
        """
        if not identifier or identifier in self:
            return False
        self.add(identifier)
        return True

    def add_user(self, user: User | None) -> None:
        """Remember a user just captured or stored by this process."""
        if user is not None:
            self.add(user.email)
            self.add(username_key(user.username, self._case) if user.username else None)

    def __contains__(self, identifier: str) -> bool:
        return any(identifier in layer for layer in self._layers)

    def may_have_migrated(self, identifier: str) -> bool:
        """False only when ``identifier`` surely belongs to no migrated user."""
        # SECURITY: both folds, since the identifier may be an email or a username; a false
        # "not migrated" would send a migrated user's password to the legacy app.
        return (
            not self.ready
            or normalise_identifier(identifier) in self
            or username_key(identifier, self._case) in self
        )


class KnownLoader:
    """Loads ``known`` from the store, then keeps it up to date until cancelled."""

    def __init__(self, store: Store, known: KnownIdentifiers, interval: float) -> None:
        self._store = store
        self._known = known
        self._interval = interval
        self._cursor = _START  # (created_at, id) of the newest user read so far
        self._read_at = float("-inf")  # when the last read began, by this clock

    async def catch_up(self) -> int:
        """Read every user created since the last read (and the overlap); return how many."""
        seen, started = self._cursor, time.time()
        # A row the last read missed was committed after it began, so was created at most
        # OVERLAP before that: re-read from there, or from the newest row when that is later.
        # Not from OVERLAP before the newest row: after an import of users all stamped a day
        # ago, that would re-read the whole import at every poll.
        after = seen if seen == _START else min(seen, (self._read_at - OVERLAP, ""))
        read = 0
        while True:
            rows = await self._store.identifiers_after(after, PAGE)
            for i, row in enumerate(rows, 1):
                if (row.created_at, row.id) > seen:
                    self._known.add(row.email)
                    self._known.add(row.username)
                    read += 1
                else:
                    # The overlap: mostly rows read before, which must not fill the layers
                    # again, and now and then one committed after a newer row was read.
                    email, username = (
                        self._known.ensure(row.email),
                        self._known.ensure(row.username),
                    )
                    read += email or username
                if i % SLICE == 0:
                    await asyncio.sleep(0)  # hashing is CPU work: let requests through between
            if rows:
                after = (rows[-1].created_at, rows[-1].id)
                self._cursor = max(self._cursor, after)
            if len(rows) < PAGE:
                self._read_at = started
                return read

    async def load(self) -> None:
        """The first full load; the filter answers "surely not migrated" only after it."""
        # Two identifiers a user, and room to grow by a tenth before a second layer is needed.
        self._known.reserve(int(await self._store.count_users() * 2.2))
        read = await self.catch_up()
        self._known.ready = True
        log.event("known.loaded", users=read, kib=self._known.nbytes // 1024)

    async def run(self) -> None:
        """Load (retrying while the store is down), then refresh every ``interval`` seconds."""
        attempt = 0
        while not self._known.ready:
            try:
                await self.load()
            except StoreError as exc:
                log.event("known.load_failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                attempt += 1
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.catch_up()
            except StoreError as exc:
                log.event("known.refresh_failed", error=type(exc).__name__)
