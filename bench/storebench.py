"""Scenario 6: the store on many users: lookups (find_user) and capture inserts.

Each backend is seeded in bulk with N migrated users, then measured through the Store
interface authshim uses: one lookup at a time (latency), lookups from 16 tasks (throughput),
and inserts of new users from 16 tasks, as concurrent captures do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.report import Row
from bench.seed import email, seed_postgres, seed_sqlite
from store.base import NewUser, Store
from store.factory import create_store

CONCURRENCY = 16


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def _timed(store: Store, n: int, users: int) -> list[float]:
    names = [email(f"m{random.randint(1, users)}") for _ in range(n)]
    times = []
    for name in names:
        started = time.perf_counter()
        found = await store.find_user(name)
        times.append((time.perf_counter() - started) * 1000)
        if found is None:
            raise RuntimeError(f"seeded user {name} not found")
    return times


async def _concurrently(n: int, op: Callable[[int], Awaitable[object]]) -> float:
    """Run ``op(0..n-1)`` from CONCURRENCY tasks; return operations per second."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - started)


async def _measure(url: str, backend: str, users: int, ops: int, phc: str) -> list[Row]:
    store = create_store(url, pool_min=2, pool_max=CONCURRENCY)
    await store.open()
    try:
        await _timed(store, 200, users)  # warm the cache a little, as a running proxy has
        times = await _timed(store, ops, users)
        lookups = await _concurrently(
            ops, lambda _: store.find_user(email(f"m{random.randint(1, users)}"))
        )
        stamp = int(time.time() * 1000)

        def insert(i: int) -> Awaitable[object]:
            name = f"i{stamp}x{i}"
            profile = {"id": name, "email": email(name), "username": name}
            return store.insert_user(NewUser(email(name), name, phc, profile, name, "login"))

        inserts = await _concurrently(max(ops // 4, 50), insert)
    finally:
        await store.close()
    label = f"{users:,} users"
    return [
        Row("6 store", f"{backend}: lookup, 1 at a time", 1000 / (sum(times) / len(times)),
            "lookups/s", _pct(times, 50), _pct(times, 99), note=label, cores="1 task"),
        Row("6 store", f"{backend}: lookups, {CONCURRENCY} tasks", lookups, "lookups/s",
            note=label, cores=f"{CONCURRENCY} tasks"),
        Row("6 store", f"{backend}: capture inserts, {CONCURRENCY} tasks", inserts, "inserts/s",
            note=label + ("; synchronous=FULL (fsync per insert)" if backend == "SQLite" else ""),
            cores=f"{CONCURRENCY} tasks"),
    ]  # fmt: skip


def run(work: Path, users: int, ops: int, phc: str, postgres: str | None) -> list[Row]:
    """Rows for SQLite, and for PostgreSQL when a URL is given."""
    path = work / "store-bench.db"
    started = time.perf_counter()
    seed_sqlite(path, users, phc)
    seeded = time.perf_counter() - started
    rows = asyncio.run(_measure(f"sqlite:///{path}", "SQLite", users, ops, phc))
    rows[0].raw["seed_s"] = seeded
    if postgres:
        started = time.perf_counter()
        asyncio.run(seed_postgres(postgres, users, phc))
        seeded = time.perf_counter() - started
        pg = asyncio.run(_measure(postgres, "PostgreSQL", users, ops, phc))
        pg[0].raw["seed_s"] = seeded
        rows += pg
    return rows
