"""What every handler needs, built once per app: the parts a request's story is told with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from proxy.config import Config
from proxy.forward import Forwarder
from proxy.modes import ModeWatcher
from proxy.sessions import Sessions, identity_headers
from proxy.stats import Counters
from store.base import Store, User
from store.passwords import PasswordPool


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass(slots=True)
class Services:
    config: Config
    store: Store
    passwords: PasswordPool
    forwarder: Forwarder
    sessions: Sessions
    counters: Counters
    modes: ModeWatcher
    capture_locks: KeyedLocks = field(default_factory=KeyedLocks)

    @property
    def cutover(self) -> bool:
        return self.modes.current == "cutover"

    def identity(self, user: User | None) -> dict[str, str]:
        """The identity headers the upstream gets for ``user`` (none without a session)."""
        if user is None:
            return {}
        return identity_headers(user, self.config.identity, self.config.profile)

    async def session_user(self, cookies: dict[str, str] | None) -> User | None:
        """The user whose valid session cookie the request carries, if any."""
        if not cookies:
            return None
        return await self.sessions.user(cookies.get(self.config.session.cookie))
