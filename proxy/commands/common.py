"""What the store-reading commands share: where the store is, tables, progress on a terminal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

import orjson

from proxy.config import load_store_config
from proxy.errors import ConfigError
from store.base import Store
from store.factory import create_store, require_existing


def add_store_args(parser: argparse.ArgumentParser, default_config: str) -> None:
    """``--config FILE`` (reads only ``[store]``) or ``--store URL``, and ``--json``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", default=default_config, help="read [store] from this config")
    where.add_argument("--store", help="a store URL instead of a config, e.g. sqlite:///./a.db")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def store_url(args: argparse.Namespace) -> str:
    """The store URL the arguments name."""
    if args.store:
        return str(args.store)
    return load_store_config(args.config)[0].url


@asynccontextmanager
async def opened_store(args: argparse.Namespace) -> AsyncIterator[Store]:
    """The store, opened (and migrated) for the length of one command."""
    async with existing_store(store_url(args)) as store:
        yield store


@asynccontextmanager
async def existing_store(url: str) -> AsyncIterator[Store]:
    """The store at ``url``, opened for one command; never a new one.

    Raises:
        StoreNotFound: nothing is there (a mistyped path or schema): a command that reads or
            changes a store must not create an empty one and report on that.
        ConfigError: the URL is malformed.
    """
    try:
        store = create_store(url)
    except ValueError as exc:
        raise ConfigError([f"store.url: {exc}"]) from None
    await require_existing(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def print_json(value: Any, out: TextIO | None = None) -> None:
    """One JSON document, indented, on stdout."""
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), file=out or sys.stdout)


def print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    """A plain aligned table on stdout."""
    cells = [[str(h) for h in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class Progress:
    """``done/total`` on stderr, rewritten in place, only when stderr is a terminal."""

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self._label = label
        self._total = max(total, 1)
        self._stream = stream or sys.stderr
        self._shown = -1
        self.enabled = self._stream.isatty()

    def update(self, done: int) -> None:
        percent = done * 100 // self._total
        if self.enabled and percent != self._shown:
            self._shown = percent
            print(f"\r{self._label}: {done}/{self._total} ({percent}%)", end="", file=self._stream)

    def finish(self, done: int) -> None:
        if self.enabled:
            self.update(done)
            print(file=self._stream)
