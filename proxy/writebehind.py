"""Writes an answer does not depend on, gathered on the request path and written in batches.

A local login ends with bookkeeping: its login is counted on the user, and its attempt is
settled on the brute-force counters. The answer never depends on those writes (a failed one is
logged, not reported), so they need not hold it up, nor cost a store round trip each: requests
add them here, and ``run`` writes whatever gathered every ``interval`` seconds, in one store
call per batch. Under load, ten logins' bookkeeping then costs one transaction instead of ten.

What it costs: the writes land up to ``interval`` seconds after the answer, and a crash loses
at most that much of them. Only writes that may be lost go here: a login count, a counter
being cleared or taken back (a lost one leaves the limit stricter, never looser). A new
password hash never does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from proxy import log
from store.errors import StoreError

T = TypeVar("T")

DEFAULT_INTERVAL = 0.1  # seconds between batches: ~10 logins' bookkeeping at 100 logins/s
DEFAULT_LIMIT = 100_000  # items kept while the store is down, before the oldest go
MAX_RETRY_DELAY = 8.0  # seconds between tries while the store keeps failing


class WriteBehind(Generic[T]):
    """Items added on the request path; ``run`` hands them to ``write`` in batches."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        interval: float = DEFAULT_INTERVAL,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self.name = name
        self._write = write
        self._interval = interval
        self._limit = limit
        self._pending: list[T] = []
        self._wanted = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, item: T) -> None:
        """Queue ``item`` for the next batch (no await: the request goes on at once)."""
        if len(self._pending) >= self._limit:
            del self._pending[0]  # the store has been down long: the oldest goes first
            log.event("writebehind.dropped", batch=self.name)
        self._pending.append(item)
        self._wanted.set()

    async def flush(self) -> bool:
        """Write everything queued so far; keep it for the next batch when the store fails.
        Return whether the store took it (True when there was nothing to write)."""
        batch, self._pending = self._pending, []
        self._wanted.clear()
        if not batch:
            return True
        try:
            await self._write(batch)
            return True
        except StoreError as exc:
            # Older first, as they came; past the limit the oldest go, as in ``add``.
            self._pending = (batch + self._pending)[-self._limit :]
            self._wanted.set()
            log.event("writebehind.failed", batch=self.name, error=type(exc).__name__)
            return False

    async def run(self) -> None:
        """Write a batch ``interval`` seconds after its first item, until cancelled; then
        write what is left once more. Idle, it sleeps without waking; while the store fails,
        it tries again less and less often, up to every ``MAX_RETRY_DELAY`` seconds."""
        delay = self._interval
        try:
            while True:
                await self._wanted.wait()
                await asyncio.sleep(delay)
                written = await self.flush()
                delay = self._interval if written else min(max(1.0, delay * 2), MAX_RETRY_DELAY)
        finally:
            with contextlib.suppress(StoreError):
                await asyncio.shield(self.flush())
