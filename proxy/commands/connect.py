"""``authshim check-config FILE --connect``: try what the config points at, and say what answered.

The store (reached, and whether it exists yet), the upstream (any HTTP answer counts) and the
legacy look-up (a made-up address must come back "not found"). Nothing is created or changed.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

import aiohttp

from proxy.commands.store import masked
from proxy.config import Config
from proxy.errors import LookupFailed
from proxy.legacy_db import create_source
from proxy.legacy_db.lookup import build_lookup
from store.errors import StoreError, StoreNotFound
from store.factory import require_existing

# Never a real user: the reserved .invalid top-level domain (RFC 2606), an unlikely username.
PROBE_EMAIL = "authshim-check-config@example.invalid"
PROBE_USERNAME = "authshim-check-config-probe"


async def try_connections(config: Config, out: TextIO) -> int:
    """Print one line per thing tried; return 0 when each answered, else 1."""
    results = [
        await _store(config, out),
        await _upstream(config, out),
        await _lookup(config, out),
    ]
    return 0 if all(results) else 1


async def _store(config: Config, out: TextIO) -> bool:
    where = masked(config.store.url)
    try:
        await require_existing(config.store.url)
    except StoreNotFound:
        print(f"store: {where}: reached, no store yet (serve creates it)", file=out)
        return True
    except StoreError as exc:
        print(f"store: {where}: FAILED: {exc}", file=out)
        return False
    print(f"store: {where}: reached, the store exists", file=out)
    return True


async def _upstream(config: Config, out: TextIO) -> bool:
    url = config.upstream.url
    timeout = aiohttp.ClientTimeout(total=config.upstream.connect_timeout + 5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session,
            session.get(url, allow_redirects=False) as answer,
        ):
            status = answer.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        print(f"upstream: {url}: FAILED: {type(exc).__name__}", file=out)
        return False
    print(f"upstream: {url}: answered {status}", file=out)
    return True


async def _lookup(config: Config, out: TextIO) -> bool:
    if config.lookup is None:
        print("lookup: not configured", file=out)
        return True
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        source = create_source(config.legacy_db)
        lookup = build_lookup(config, session, source=source)
        assert lookup is not None
        probe = PROBE_EMAIL if lookup.by_email_enabled else PROBE_USERNAME
        try:
            if lookup.by_email_enabled:
                found = await lookup.by_email(probe)
            else:
                found = await lookup.by_username(probe)
        except LookupFailed as exc:
            print(f"lookup: FAILED: {exc}", file=out)
            return False
        finally:
            if source is not None:
                await source.close()
    if found is not None:
        print(f"lookup: FAILED: it found a user for {probe}, which nobody has", file=out)
        return False
    print("lookup: answered not found for a made-up address, as it should", file=out)
    return True


def run(config: Config, out: TextIO) -> int:
    """``try_connections`` on its own event loop."""
    return asyncio.run(try_connections(config, out))
