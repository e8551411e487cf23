"""Copy one store into another (SQLite into PostgreSQL, when a site outgrows one machine).

Users keep their ids, hashes, profiles, times, counts and session epochs, so sessions issued
before the copy stay valid and nobody notices. Every write is an upsert keyed by what the
source holds: users by id, settings by key, counters set to the source's value (never added),
so a copy run twice leaves the same result, and a copy cut short is finished by running it
again. Each batch is one atomic statement: nothing is ever half-written.

What the target holds and the source does not (users captured by replicas already running on
it) is kept; what both hold is overwritten by the source.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from store.base import Store, User

DEFAULT_BATCH = 1000

# Called after each batch with (users copied so far, users in the source at the start).
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy wrote, and how long it took."""

    users: int
    settings: int
    counters: int
    seconds: float


async def copy_store(
    source: Store, target: Store, *, batch: int = DEFAULT_BATCH, progress: Progress | None = None
) -> CopyReport:
    """Upsert every user, setting and counter of ``source`` into ``target``; both are open.

    Raises:
        UserExists: the target holds another user (another id) with the same email, username
            or legacy id; the batches before it are copied, the rest is not.
        StoreUnavailable: either database failed; running the copy again resumes it.
    """
    if batch < 1:
        raise ValueError("batch must be 1 or more")
    started = time.monotonic()
    total = await source.count_users()
    copied = 0
    after = ""
    while True:
        users: list[User] = await source.users_after(after, batch)
        if not users:
            break
        await target.upsert_users(users)
        copied += len(users)
        after = users[-1].id
        if progress is not None:
            # Users captured meanwhile can push the count past the total counted at the start.
            progress(copied, max(total, copied))
        if len(users) < batch:
            break
    settings = await source.all_settings()
    # One by one, in key order: a PostgreSQL target announces each to running replicas.
    for key in sorted(settings):
        await target.set_setting(key, settings[key])
    counters = await source.counters()
    await target.set_counters(counters)
    return CopyReport(copied, len(settings), len(counters), time.monotonic() - started)
