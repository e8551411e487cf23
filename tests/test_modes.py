"""The mode watcher: told at once by a store that announces settings, polling as the fallback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from proxy.modes import ModeWatcher, write_mode
from store.postgres import PostgresStore
from tests.fixtures.store import PG_DSN, _drop_schema, _pg_reachable


class AnnouncingStore:
    """Just the settings of a store that announces changes, with a read that can be held."""

    def __init__(self) -> None:
        self.value = "migrate"
        self.callbacks: list[Callable[[str, str], None]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def get_setting(self, key: str) -> str | None:
        value = self.value  # read now, answered later: a slow query
        await self.hold.wait()
        return value

    async def listen_settings(self, callback: Callable[[str, str], None]) -> None:
        self.callbacks.append(callback)

    def announce(self, value: str) -> None:
        self.value = value
        for callback in self.callbacks:
            callback("mode", value)


async def test_an_announcement_is_not_undone_by_a_slower_poll() -> None:
    """A poll that read the old mode before an announced switch does not put it back."""
    store = AnnouncingStore()
    watcher = ModeWatcher(store, "migrate", poll=60)  # type: ignore[arg-type]
    await watcher.listen()
    assert watcher.listening
    store.hold.clear()
    poll = asyncio.create_task(watcher.refresh())
    await asyncio.sleep(0)  # the poll has read "migrate" and waits for its answer
    store.announce("cutover")
    assert watcher.current == "cutover"
    store.hold.set()
    await poll
    assert watcher.current == "cutover"
    await watcher.refresh()  # the next poll agrees
    assert watcher.current == "cutover"


@pytest.mark.postgres
@pytest.mark.skipif(_pg_reachable() is not None, reason=_pg_reachable() or "")
async def test_postgresql_switches_arrive_without_polling() -> None:
    """On PostgreSQL a switch written elsewhere reaches a watcher whose poll is a minute away."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    reader, writer = PostgresStore(PG_DSN, schema=schema), PostgresStore(PG_DSN, schema=schema)
    await reader.open()
    await writer.open()
    try:
        watcher = ModeWatcher(reader, "migrate", poll=60)
        await watcher.listen()
        await write_mode(writer, "cutover")
        for _ in range(200):  # 2 s
            if watcher.current == "cutover":
                break
            await asyncio.sleep(0.01)
        assert watcher.current == "cutover"
    finally:
        await reader.close()
        await writer.close()
        await _drop_schema(f"{PG_DSN}?schema={schema}")
