"""LISTEN for settings on a dedicated PostgreSQL connection, reconnecting when it drops.

Pooled connections are reset with UNLISTEN, so the listener keeps its own. After the
connection drops and comes back, every stored setting is replayed to the callbacks, since
notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from store.errors import StoreUnavailable
from store.postgres.sockets import keep_alive
from store.postgres.translate import DB_ERRORS, describe, unavailable

log = logging.getLogger(__package__)  # "store.postgres", as for the whole backend

RELISTEN_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)  # then every 5 s until the database is back


class Listener:
    """Calls back on every notification of one channel, for as long as the store is open."""

    def __init__(
        self,
        dsn: str,
        *,
        channel: str,
        server_settings: dict[str, str],
        timeout: float,
        closing: Callable[[], bool],
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._server_settings = server_settings
        self._timeout = timeout
        self._closing = closing  # the store's flag: a lost listener is not reopened after close
        self._callbacks: list[Callable[[str, str], None]] = []
        self._conn: Any = None
        self._lock = asyncio.Lock()  # two first callers must not open two listeners
        self._relisten: asyncio.Task[None] | None = None

    async def add(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(key, value)`` on each notification, connecting first if need be."""
        async with self._lock:
            if self._conn is None and self._relisten is None:
                self._conn = await self._listen()
            self._callbacks.append(callback)

    async def close(self) -> None:
        """Stop reconnecting and close the listening connection."""
        if self._relisten is not None:
            self._relisten.cancel()
            await asyncio.gather(self._relisten, return_exceptions=True)
            self._relisten = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._on_lost)
            try:
                await conn.close(timeout=self._timeout)
            except (TimeoutError, *DB_ERRORS):
                conn.terminate()  # a silent server must not hold the shutdown

    async def _listen(self) -> Any:
        """Open a dedicated connection (pooled ones are reset with UNLISTEN) and LISTEN."""
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout,
                command_timeout=self._timeout,  # LISTEN and the replay read
                server_settings=self._server_settings,
            )
        except DB_ERRORS as exc:
            raise unavailable(exc) from exc
        try:
            keep_alive(conn)  # idle for hours, it must still notice a silent server
            await conn.add_listener(self._channel, self._on_notify)
        except DB_ERRORS as exc:
            conn.terminate()
            raise unavailable(exc) from exc
        conn.add_termination_listener(self._on_lost)
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str | bytes) -> None:
        try:
            key, value = orjson.loads(payload)
        except (ValueError, TypeError):  # a hand-made NOTIFY on our channel: not ours to obey
            log.warning("ignored a malformed settings notification")
            return
        for callback in list(self._callbacks):
            try:
                callback(key, value)
            except Exception:
                log.exception("settings callback failed for %r", key)

    def _on_lost(self, conn: Any) -> None:
        self._conn = None
        if not self._closing() and self._relisten is None:
            log.warning("PostgreSQL settings listener lost; reconnecting")
            self._relisten = asyncio.create_task(self._listen_again())

    async def _listen_again(self) -> None:
        """Reconnect the listener with backoff until it works or the store closes."""
        for attempt in itertools.count():
            await asyncio.sleep(RELISTEN_DELAYS[min(attempt, len(RELISTEN_DELAYS) - 1)])
            conn = None
            try:
                conn = await self._listen()
                # LISTEN is in place before this read, so no change can fall in between.
                rows = await conn.fetch(
                    "SELECT key, value FROM settings ORDER BY key", timeout=self._timeout
                )
            except BaseException as exc:  # cancelled by close() included: never leak conn
                if conn is not None:
                    conn.terminate()
                if not isinstance(exc, (StoreUnavailable, *DB_ERRORS)):
                    raise
                log.warning("settings listener still down: %s", describe(exc))
                continue
            self._conn, self._relisten = conn, None
            for row in rows:
                self._on_notify(conn, 0, self._channel, orjson.dumps([row["key"], row["value"]]))
            log.info("PostgreSQL settings listener reconnected")
            return
