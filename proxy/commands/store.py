"""``authshim store migrate-to URL``: copy the store (SQLite) into PostgreSQL, repeatably.

For a site that outgrows one machine mid-migration: copy while the single authshim still
runs, stop it, copy again (only what changed is new; the rest is rewritten identically), then
start the replicas on PostgreSQL. The copy logic is ``store.copy``; this is the command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from proxy.config import load_store_config
from store.copy import DEFAULT_BATCH, CopyReport, copy_store
from store.errors import UserExists
from store.factory import create_store, require_existing


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``store migrate-to`` to the ``authshim`` command."""
    store = subparsers.add_parser("store", help="operate on the user store itself")
    actions = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "migrate-to",
        help="copy the store into another one (PostgreSQL), safe to run again",
        description="Copy users (same ids, hashes, sessions), settings and counters into TARGET."
        " Running it again gives the same result and picks up what changed meanwhile.",
    )
    p.add_argument("target", metavar="TARGET", help="e.g. postgresql://authshim@db/authshim")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="copy the store of this config's [store] (default)")
    where.add_argument("--from", dest="source", metavar="URL", help="copy this store URL instead")
    p.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help="users per write (default: %(default)s)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``store migrate-to``; return the exit status."""
    if args.source:
        source = str(args.source)
    else:
        from proxy.cli import DEFAULT_CONFIG  # here: proxy.cli imports this module

        source = load_store_config(args.config or DEFAULT_CONFIG)[0].url
    target = str(args.target)
    if args.batch < 1:
        print("authshim: --batch must be 1 or more", file=sys.stderr)
        return 2
    if source == target:
        print("authshim: the source and the target are the same store", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_copy(source, target, args.batch, sys.stderr))
    except ValueError as exc:  # a malformed store URL
        print(f"authshim: {exc}", file=sys.stderr)
        return 2
    except UserExists as exc:
        print(
            f"authshim: the target already holds another user (another id) with the same"
            f" {exc.field}; remove one of them and run the copy again",
            file=sys.stderr,
        )
        return 1
    print(
        f"copied {report.users} users, {report.settings} settings and {report.counters}"
        f" counters from {masked(source)} to {masked(target)} in {report.seconds:.1f}s"
    )
    return 0


async def _copy(source_url: str, target_url: str, batch: int, out: TextIO) -> CopyReport:
    source, target = create_store(source_url), create_store(target_url)
    await require_existing(source_url)  # the target may be new; the source must not be
    await source.open()
    try:
        await target.open()
        try:
            report = await copy_store(source, target, batch=batch, progress=_progress(out))
        finally:
            await target.close()
    finally:
        await source.close()
    if out.isatty():
        out.write("\n")
    return report


def _progress(out: TextIO) -> _TerminalProgress | None:
    # Only a terminal gets the running count: a log file would fill with carriage returns.
    return _TerminalProgress(out) if out.isatty() else None


class _TerminalProgress:
    """Rewrites one status line on a terminal after each batch."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        self._out.write(f"\rcopying users: {done:,} of {total:,} ({percent}%)")
        self._out.flush()


def masked(url: str) -> str:
    """``url`` with any password replaced, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
