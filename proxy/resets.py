"""The durable queue of reset requests: written before the answer, worked off in the background.

A reset request is answered only once a row for it is in the store, whoever the email belongs
to, so that a process killed right after the answer loses no reset and the answer still says
nothing about who exists. A worker in every process claims queued rows with a lease (so each
request is worked on by one replica at a time) and hands each to the reset flow's ``process``,
which stores the token, queues the mail and marks the request done. A request whose work
fails on the store stays queued and is claimed again when its lease ends.

With ``reset.unknown = "forward"`` the request as the client sent it (method, target, headers,
body) is also kept in this process's memory, beside its queued row, for the worker to send on
to the legacy app's own reset should neither the store nor the look-up have the address. It is
kept in memory only (a request carries cookies and CSRF tokens, nothing to write down): a
process that stops, or another replica that claims the row, cannot forward it (``lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from proxy import log
from store.base import ResetRequest, Store
from store.errors import StoreError

BATCH = 20
# A lease outlasts one request's work: the look-up (bounded by lookup.timeout) plus a few
# store calls. One that runs out early costs a second look-up and an unmailed token, never a
# second mail (the outbox row is keyed by the request).
LEASE_MARGIN = 10.0

# Requests kept to forward: at most so many, none older than so many leases.
MAX_FORWARDS = 10_000
FORWARD_LEASES = 3

Process = Callable[[ResetRequest], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HeldRequest:
    """A reset request as the client sent it, to forward to the legacy app later."""

    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)
    at: float = field(default_factory=time.time)


class ResetQueue:
    """Queues reset requests in the store and works them off in a background worker (``run``)."""

    def __init__(self, store: Store, *, lease: float, poll: float) -> None:
        self._store = store
        self.lease = lease
        self._poll = poll
        self._wake = asyncio.Event()
        self._working = 0  # claims of this process not finished yet
        self._held: dict[str, HeldRequest] = {}

    async def queue(self, email: str, *, held: HeldRequest | None = None) -> str:
        """Durably queue a reset request for ``email`` and wake the worker; return its id.
        ``held``: the request itself, kept (in memory) should it have to be forwarded."""
        request_id = await self._store.queue_reset_request(email, now=time.time())
        if held is not None:
            self._hold(request_id, held)
        self._wake.set()
        return request_id

    def _hold(self, request_id: str, held: HeldRequest) -> None:
        # Bounded: the rows another replica claimed are never taken here, so they age out.
        oldest = time.time() - FORWARD_LEASES * self.lease
        for key in [k for k, v in self._held.items() if v.at < oldest]:
            del self._held[key]
        while len(self._held) >= MAX_FORWARDS:
            del self._held[next(iter(self._held))]
        self._held[request_id] = held

    def take_held(self, request_id: str) -> HeldRequest | None:
        """The request kept for ``request_id`` (once), or None when none is kept here."""
        return self._held.pop(request_id, None)

    def held(self, request_id: str) -> bool:
        """Whether a request is kept for ``request_id``."""
        return request_id in self._held

    async def run(self, process: Process) -> None:
        """Work off queued requests until cancelled: at once when woken, else every poll."""
        while True:
            self._wake.clear()
            try:
                while await self.work_due(process) == BATCH:
                    pass
            except StoreError as exc:
                log.event("reset.queue_failed", error=type(exc).__name__)
            except Exception as exc:
                # A bug must not stop the worker: the request's lease runs out and it is tried
                # again. Logged by class only, as its text could quote the email.
                log.event("reset.worker_error", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def work_due(self, process: Process) -> int:
        """Claim the queued requests no one works on and process them together; return how
        many were claimed."""
        self._working += 1
        try:
            claimed = await self._store.claim_reset_requests(
                now=time.time(), lease=self.lease, limit=BATCH
            )
            # Together: one slow look-up must not hold up the others' mail.
            results = await asyncio.gather(*(process(r) for r in claimed), return_exceptions=True)
        finally:
            self._working -= 1
        for result in results:
            if isinstance(result, Exception):
                log.event("reset.worker_error", error=type(result).__name__)
            elif isinstance(result, BaseException):
                raise result
        return len(claimed)

    async def idle(self) -> bool:
        """Whether nothing is queued and this process works on nothing (for tests, drains)."""
        pending = await self._store.count_pending_reset_requests()
        return pending == 0 and self._working == 0
