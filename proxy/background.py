"""Background work a request starts but does not wait for: tracked, bounded, cancelled on
shutdown, and logged when it fails (never fire-and-forget)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from proxy import log

DEFAULT_LIMIT = 256


class Background:
    """A set of running tasks with a ceiling; past it new work is refused, not queued."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> bool:
        """Start ``work`` now; return False (and drop it) when the ceiling is reached."""
        if len(self._tasks) >= self._limit:
            work.close()
            log.event("background.shed", task=name)
            return False
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.event("background.failed", task=task.get_name(), error=type(exc).__name__)

    async def drain(self) -> None:
        """Wait until every task (and any task they start) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Cancel every task and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
