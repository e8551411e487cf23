"""The migration mode (``migrate`` or ``cutover``), persisted in the store for every replica."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class SettingsListener(Protocol):
    """A store that announces settings as they change (PostgreSQL's LISTEN/NOTIFY)."""

    async def listen_settings(self, callback: Callable[[str, str], None]) -> None: ...


class ModeWatcher:
    """Keeps ``current`` in step with the store: told at once where the store can announce
    changes (PostgreSQL), and by polling it every few seconds everywhere, as the fallback."""

    def __init__(self, store: Store, default: str, poll: float) -> None:
        self._store = store
        self._default = default
        self._poll = poll
        self.current = default
        self.listening = False
        # Bumped by each announcement: a poll that read the store before the announced change
        # committed must not put the old mode back.
        self._heard = 0

    async def refresh(self) -> None:
        """Read the mode from the store now."""
        heard = self._heard
        mode = await read_mode(self._store, self._default)
        if heard == self._heard:
            self._set(mode)

    def _set(self, mode: str) -> None:
        if mode != self.current:
            log.event("mode.changed", mode=mode, was=self.current)
        self.current = mode

    def _on_setting(self, key: str, value: str) -> None:
        if key == MODE_KEY and value in MODES:
            self._heard += 1
            self._set(value)

    async def listen(self) -> None:
        """Subscribe to the store's announcements, if it makes any; failures leave the poll."""
        if self.listening or not isinstance(self._store, SettingsListener):
            return
        try:
            await self._store.listen_settings(self._on_setting)
        except StoreError as exc:
            log.event("mode.listen_failed", error=type(exc).__name__)
            return
        # The store re-subscribes by itself after a lost connection (and replays settings).
        self.listening = True

    async def run(self) -> None:
        """Poll until cancelled; a store failure keeps the last known mode."""
        while True:
            await asyncio.sleep(self._poll)
            try:
                await self.listen()
                await self.refresh()
            except StoreError as exc:
                log.event("mode.poll_failed", error=type(exc).__name__)
