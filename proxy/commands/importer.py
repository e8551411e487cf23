"""``authshim import FILE`` (or ``--from-db``): bring a legacy user table over before anyone
logs in (issue 17). ``--from-db`` lists the users of ``[legacy_db]`` (proxy/legacy_db/importing.py).

FILE is NDJSON (``authshim users export``'s shape, or one Auth0 bulk-import object a line) or
Auth0's bulk-import JSON array. The records are checked by the capture's rules and stored in
batches by ``store.importing``; this is the command: the file, the progress bar, the report.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from tqdm import tqdm

from proxy.commands.common import add_store_args, opened_store, print_json
from proxy.config import ProfileMap, load_legacy_db, load_recipes, load_store_config
from proxy.errors import ConfigError
from proxy.legacy_db import Source, create_legacy_db
from proxy.legacy_db.errors import LegacyDbError
from proxy.legacy_db.importing import import_from_db
from store.errors import StoreError
from store.hashes import Hashes
from store.importing import DEFAULT_BATCH, ImportReport, read_records, run_import


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import`` to the ``authshim`` command."""
    from proxy.cli import DEFAULT_CONFIG  # here: proxy.cli imports this module

    p = subparsers.add_parser(
        "import",
        help="import users with their legacy password hashes from a file",
        description="Import users from NDJSON or Auth0 bulk-import JSON. Safe to run again: it"
        " brings over what changed and never overwrites a user who migrated here.",
    )
    p.add_argument(
        "file", metavar="FILE", nargs="?", help="NDJSON, or a JSON array (Auth0 bulk import)"
    )
    p.add_argument(
        "--from-db", action="store_true",
        help="list the users of the config's [legacy_db] (list_users) instead of a FILE",
    )  # fmt: skip
    add_store_args(p, DEFAULT_CONFIG)
    p.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="users per transaction")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``import``; return the exit status (2: bad arguments or config, 1: store error)."""
    if args.batch < 1:
        print("authshim: --batch must be 1 or more", file=sys.stderr)
        return 2
    if args.from_db:
        return run_from_db(args)
    if args.file is None:
        print("authshim: give a FILE or --from-db", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        hashes, requires_username = _rules(args)
        with path.open("rb") as handle:
            report = asyncio.run(_import(args, handle, _count(path), hashes, requires_username))
    except OSError as exc:
        print(f"authshim: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    except orjson.JSONDecodeError as exc:
        print(f"authshim: {path}: not a JSON array: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError) as exc:  # ValueError: a malformed store URL
        print(f"authshim: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"authshim: {exc}; running the import again resumes it", file=sys.stderr)
        return 1
    return _report(args, report)


def _report(args: argparse.Namespace, report: ImportReport) -> int:
    if args.json:
        print_json({"dry_run": args.dry_run, **report.as_dict()})
    else:
        _print_report(report, dry_run=args.dry_run)
    return 0


def run_from_db(args: argparse.Namespace) -> int:
    """``import --from-db``: the users of ``[legacy_db] list_users``, a page a batch."""
    if args.file is not None or args.store:
        print("authshim: --from-db reads [legacy_db] from --config: give no FILE or --store",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        hashes, requires_username = _rules(args)
        db_config, mapping = load_legacy_db(args.config)
        if db_config is None or db_config.list_users is None:
            print("authshim: --from-db needs [legacy_db.list_users] in the config",
                  file=sys.stderr)  # fmt: skip
            return 2
        source = Source(db_config, create_legacy_db(db_config))
        report = asyncio.run(_import_db(args, source, mapping, hashes, requires_username))
    except (ConfigError, ValueError) as exc:
        print(f"authshim: {exc}", file=sys.stderr)
        return 2
    except LegacyDbError as exc:
        print(f"authshim: {exc}; running the import again resumes it", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"authshim: {exc}; running the import again resumes it", file=sys.stderr)
        return 1
    return _report(args, report)


def _progress(total: int | None) -> tuple[tqdm[Any], Callable[[int], None]]:
    """A progress bar on stderr and the callback that moves it to the number of users read."""
    bar: tqdm[Any] = tqdm(total=total, unit=" users", disable=None, file=sys.stderr, desc="import")
    done = 0

    def progress(read: int) -> None:
        nonlocal done
        bar.update(read - done)
        done = read

    return bar, progress


async def _import_db(
    args: argparse.Namespace, source: Source, mapping: ProfileMap, hashes: Hashes, requires: bool
) -> ImportReport:
    bar, progress = _progress(None)
    try:
        async with opened_store(args) as store:
            return await import_from_db(
                store, source, mapping, hashes, page=args.batch, dry_run=args.dry_run,
                requires_username=requires, progress=progress,
            )  # fmt: skip
    finally:
        await source.close()
        bar.close()


def _rules(args: argparse.Namespace) -> tuple[Hashes, bool]:
    """The recipes and migration.requires_username of the config (none with --store)."""
    if args.store:
        return Hashes(), False
    _, migration = load_store_config(args.config)
    return Hashes(load_recipes(args.config)), migration.requires_username


async def _import(
    args: argparse.Namespace, handle: BinaryIO, total: int, hashes: Hashes, requires: bool
) -> ImportReport:
    bar, progress = _progress(total)
    try:
        async with opened_store(args) as store:
            return await run_import(
                store, _records(handle), hashes, batch=args.batch, dry_run=args.dry_run,
                requires_username=requires, progress=progress,
            )  # fmt: skip
    finally:
        bar.close()


def _records(handle: BinaryIO) -> Iterator[object]:
    """NDJSON lines, or the elements of one JSON array (Auth0's bulk-import file)."""
    head = handle.read(64).lstrip()
    handle.seek(0)
    if head.startswith(b"["):
        document: Any = orjson.loads(handle.read())
        yield from document if isinstance(document, list) else [None]
        return
    yield from read_records(handle, orjson.loads)


def _count(path: Path) -> int:
    """Lines in the file (records, for the progress bar's total), read in large chunks."""
    lines = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def _print_report(report: ImportReport, *, dry_run: bool) -> None:
    dry = " (dry run: nothing written)" if dry_run else ""
    print(f"read {report.read} users; {report.verifiable} verifiable{dry}")
    for name, n in sorted(report.formats.items()):
        print(f"  format {name}: {n}")
    for reason, n in sorted(report.refused.items()):
        print(f"  refused {reason}: {n}")
    if not dry_run:
        print(
            f"inserted {report.inserted}, updated {report.updated},"
            f" unchanged or kept {report.unchanged}, conflicts {report.conflicts}"
        )
