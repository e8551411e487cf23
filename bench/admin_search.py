"""Admin search and pagination timings on many generated users (SQLite and PostgreSQL).

    .venv/bin/python -m bench.admin_search --users 100000 [--pg postgresql://...]

Prints the median of several runs of each query: a first page, a page deep in the listing,
prefix searches (broad and narrow), an exact legacy id, filters, and the stats queries.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from store.base import Store
from store.factory import create_store
from tests import admin_seed

RUNS = 7


async def _time(op: Callable[[], Awaitable[Any]]) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def run(url: str, n: int) -> None:
    store: Store = create_store(url)
    await store.open()
    try:
        started = time.perf_counter()
        await admin_seed.seed(url, n)
        print(f"  seeded {n} users in {time.perf_counter() - started:.1f} s")
        if url.startswith("postgresql"):
            await _vacuum(url)  # what autovacuum does after a bulk load: index-only scans work
        mid = next(iter(admin_seed.generate(1, n // 2)))
        queries: dict[str, Callable[[], Awaitable[Any]]] = {
            "list, first page of 50": lambda: store.list_users(limit=50),
            "list, page at the middle": lambda: store.list_users(
                after=(mid.created_at, mid.id), limit=50
            ),
            "list, source=signup": lambda: store.list_users(source="signup", limit=50),
            "search 'grace' (10% match)": lambda: store.search_users("grace", limit=50),
            "search 'grace' deep page (emails)": lambda: store.search_users(
                "grace", after=("grace5", ""), limit=50
            ),
            "search 'grace1' page 2": lambda: store.search_users(
                "grace1", after=("grace1", ""), limit=50
            ),
            f"search '{mid.username}' (1 match)": lambda: store.search_users(mid.username),
            "search exact legacy id": lambda: store.search_users(mid.legacy_id),
            "search 'alice' source=signup (3%)": lambda: store.search_users(
                "alice", source="signup", limit=50
            ),
            "search 'alice' source=import (none)": lambda: store.search_users(
                "alice", source="import", limit=50
            ),
            "count_by_source": store.count_by_source,
            "migrated_per_day (30 days)": lambda: store.migrated_per_day(
                since=mid.created_at - 30 * 86400
            ),
        }
        for name, op in queries.items():
            print(f"  {name:<40} {await _time(op):8.2f} ms")
    finally:
        await store.close()


async def _vacuum(url: str) -> None:
    import asyncpg

    dsn, _, schema = url.partition("?schema=")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute("VACUUM ANALYZE users")
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--pg", help="PostgreSQL DSN (a fresh schema is created and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(f"SQLite, {args.users} users")
        await run(f"sqlite:///{Path(folder) / 'bench.db'}", args.users)
    if args.pg:
        import asyncpg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        print(f"PostgreSQL, {args.users} users")
        try:
            await run(f"{args.pg}?schema={schema}", args.users)
        finally:
            conn = await asyncpg.connect(args.pg)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
