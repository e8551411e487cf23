"""The migration mode (``migrate`` or ``cutover``), persisted in the store for every replica."""

from __future__ import annotations

import asyncio

from proxy import log
from store.base import MODES, Store
from store.errors import StoreError

MODE_KEY = "mode"


async def read_mode(store: Store, default: str) -> str:
    """The mode the store holds, or ``default`` (the config's) when none was ever set."""
    value = await store.get_setting(MODE_KEY)
    return value if value in MODES else default


async def write_mode(store: Store, mode: str) -> None:
    """Persist ``mode`` so that every replica switches to it."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    await store.set_setting(MODE_KEY, mode)


class ModeWatcher:
    """Keeps ``current`` in step with the store by polling it every few seconds."""

    def __init__(self, store: Store, default: str, poll: float) -> None:
        self._store = store
        self._default = default
        self._poll = poll
        self.current = default

    async def refresh(self) -> None:
        """Read the mode from the store now."""
        mode = await read_mode(self._store, self._default)
        if mode != self.current:
            log.event("mode.changed", mode=mode, was=self.current)
        self.current = mode

    async def run(self) -> None:
        """Poll until cancelled; a store failure keeps the last known mode."""
        while True:
            await asyncio.sleep(self._poll)
            try:
                await self.refresh()
            except StoreError as exc:
                log.event("mode.poll_failed", error=type(exc).__name__)
