"""Outcome counters: kept in memory per process, flushed to the store's per-day counters."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

from proxy import log
from store.base import Store
from store.errors import StoreError


class Counters:
    """Counts events cheaply on the request path; a background task writes them out."""

    def __init__(self, store: Store, interval: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._pending: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        """Count ``n`` events called ``name``."""
        self._pending[name] += n
        self.totals[name] += n

    async def flush(self) -> None:
        """Write what was counted since the last flush to the store."""
        pending, self._pending = self._pending, Counter()
        names = list(pending)
        for done, name in enumerate(names):
            try:
                await self._store.incr(name, pending[name])
            except StoreError as exc:
                # Keep the counts for the next flush rather than lose them, and stop: against a
                # locked store each further try would wait out the busy timeout too.
                self._pending.update({rest: pending[rest] for rest in names[done:]})
                log.event("counters.flush_failed", error=type(exc).__name__)
                return

    async def run(self) -> None:
        """Flush every ``interval`` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self._interval)
                await self.flush()
        finally:
            with contextlib.suppress(StoreError):
                await asyncio.shield(self.flush())
