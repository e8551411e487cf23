"""The durable queue of reset requests: written before the answer, worked off in the background.

A reset request is answered only once a row for it is in the store, whoever the email belongs
to, so that a process killed right after the answer loses no reset and the answer still says
nothing about who exists. A worker in every process claims queued rows with a lease (so each
request is worked on by one replica at a time) and hands each to the reset flow's ``process``,
which stores the token, queues the mail and marks the request done. A request whose work
fails on the store stays queued and is claimed again when its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from proxy import log
from store.base import ResetRequest, Store
from store.errors import StoreError

BATCH = 20
# A lease outlasts one request's work: the look-up (bounded by lookup.timeout) plus a few
# store calls. One that runs out early costs a second look-up and an unmailed token, never a
# second mail (the outbox row is keyed by the request).
LEASE_MARGIN = 10.0

Process = Callable[[ResetRequest], Awaitable[None]]


class ResetQueue:
    """Queues reset requests in the store and works them off in a background worker (``run``)."""

    def __init__(self, store: Store, *, lease: float, poll: float) -> None:
        self._store = store
        self.lease = lease
        self._poll = poll
        self._wake = asyncio.Event()
        self._working = 0  # claims of this process not finished yet

    async def queue(self, email: str) -> str:
        """Durably queue a reset request for ``email`` and wake the worker; return its id."""
        request_id = await self._store.queue_reset_request(email, now=time.time())
        self._wake.set()
        return request_id

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
