"""``authshim users list|search|show|delete|block|unblock|export`` and ``authshim stats``.

They read the store directly (no running proxy needed). A running proxy notices a block or
a deletion within ``session.cache_ttl``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from proxy.admin.export import export_lines
from proxy.admin.report import gather
from proxy.admin.users import (
    DEFAULT_PER_PAGE,
    BadQuery,
    UserPage,
    UserQuery,
    find_users,
    iso,
    parse_time,
    resolve_user,
    user_view,
)
from proxy.commands.common import Progress, add_store_args, opened_store, print_json, print_table
from proxy.config import load_readiness_days
from proxy.modes import read_mode
from store.base import SOURCES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``users`` and ``stats`` to the ``authshim`` command."""
    from proxy.cli import DEFAULT_CONFIG

    users = subparsers.add_parser("users", help="list, search, show, block, delete, export users")
    verbs = users.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, help_text in (("list", "users in migration order"), ("search", "find users")):
        p = verbs.add_parser(verb, help=help_text)
        if verb == "search":
            p.add_argument("query", help="email/username prefix or exact legacy id")
        p.add_argument("--source", choices=SOURCES)
        p.add_argument("--since", help="migrated on or after (2024-05-01, or a date-time)")
        p.add_argument("--limit", type=int, default=DEFAULT_PER_PAGE, help="users per page")
        p.add_argument("--page", help="the next-page token a previous run printed")
        add_store_args(p, DEFAULT_CONFIG)
        p.set_defaults(run=_sync(_list))
    for verb, help_text in (
        ("show", "one user (by id, email or username)"),
        ("delete", "remove a user; they migrate again at their next login"),
        ("block", "refuse the user's logins and sessions"),
        ("unblock", "allow the user again"),
    ):
        p = verbs.add_parser(verb, help=help_text)
        p.add_argument("user", help="authshim id, email or username")
        if verb == "delete":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        add_store_args(p, DEFAULT_CONFIG)
        p.set_defaults(run=_sync(_one))
    p = verbs.add_parser("export", help="every user as NDJSON (hashes included)")
    p.add_argument("--output", "-o", help="write to this file (default: standard output)")
    add_store_args(p, DEFAULT_CONFIG)
    p.set_defaults(run=_sync(_export))

    stats = subparsers.add_parser("stats", help="the migration at a glance")
    stats.add_argument("--days", type=int, default=30, help="window of the figures (default 30)")
    stats.add_argument("--readiness-days", type=int, help="default: admin.readiness_days")
    add_store_args(stats, DEFAULT_CONFIG)
    stats.set_defaults(run=_sync(_stats))


def _sync(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(asyncio.run(command(args)))
        except BadQuery as exc:
            print(f"authshim: {exc}", file=sys.stderr)
            return 2

    return run


async def _list(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise BadQuery("--limit must be between 1 and 1000")
    since = parse_time(args.since, "--since") if args.since else None
    query = UserQuery(getattr(args, "query", ""), args.source, since, args.page, args.limit)
    async with opened_store(args) as store:
        page = await find_users(store, query)
    if args.json:
        print_json({"users": [user_view(u) for u in page.users], "next_page": page.next_page})
    else:
        _table(page)
    return 0


def _table(page: UserPage) -> None:
    rows = [
        (u.id, u.email, u.username, u.legacy_id, u.source, iso(u.created_at),
         "blocked" if u.blocked else "")
        for u in page.users
    ]  # fmt: skip
    print_table(rows, ("id", "email", "username", "legacy id", "source", "migrated", ""))
    if page.next_page:
        print(f"more: --page {page.next_page}")


async def _one(args: argparse.Namespace) -> int:
    async with opened_store(args) as store:
        user = await resolve_user(store, args.user)
        if user is None:
            print(f"authshim: no user {args.user!r}", file=sys.stderr)
            return 1
        if args.verb == "delete":
            if not args.yes and not _confirm(f"delete {user.email or user.username} ({user.id})?"):
                print("authshim: not deleted (pass --yes to skip the question)", file=sys.stderr)
                return 2
            await store.delete_user(user.id)
        elif args.verb in ("block", "unblock"):
            await store.set_blocked(user.id, args.verb == "block")
        user = await store.get_user(user.id) if args.verb != "delete" else user
    assert user is not None
    view = user_view(user)
    if args.json:
        print_json({**view, "deleted": True} if args.verb == "delete" else view)
    elif args.verb == "show":
        print_table([(k, orjson.dumps(v).decode() if k == "profile" else v)
                     for k, v in view.items()], ("field", "value"))  # fmt: skip
    else:
        print(f"{args.verb}{'d' if args.verb == 'delete' else 'ed'}: {user.id}")
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


async def _export(args: argparse.Namespace) -> int:
    async with opened_store(args) as store:
        total = await store.count_users()
        # A one-shot command: nothing else runs on this loop, so plain file writes are fine.
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: ASYNC230
        progress = Progress("exported", total)
        done = 0
        try:
            async for line in export_lines(store):
                out.write(line)
                done += 1
                if done % 1000 == 0:
                    progress.update(done)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
        progress.finish(done)
    return 0


async def _stats(args: argparse.Namespace) -> int:
    if not 1 <= args.days <= 366:
        raise BadQuery("--days must be between 1 and 366")
    readiness_days = args.readiness_days or (30 if args.store else load_readiness_days(args.config))
    async with opened_store(args) as store:
        document = await gather(
            store, days=args.days, readiness_days=readiness_days,
            mode=await read_mode(store, "migrate"),
        )  # fmt: skip
    if args.json:
        print_json(document)
    else:
        _print_stats(document)
    return 0


def _print_stats(d: dict[str, Any]) -> None:
    ready = d["readiness"]
    share = "n/a" if ready["share"] is None else f"{ready['share'] * 100:.1f}%"
    print(f"mode: {d['mode']}")
    print(f"users migrated: {d['users']['total']}  ({_pairs(d['users']['by_source'])})")
    print(
        f"cut-over readiness ({ready['days']} days): {share}"
        f"  ({ready['migrated']} of {ready['active']} recent logins migrated)"
    )
    logins = d["logins"]
    print(f"logins, last {d['days']} days: {logins['local']} answered locally,"
          f" {logins['forwarded']} forwarded  ({_pairs(logins['by_outcome'])})")  # fmt: skip
    print(f"captures rejected: {_pairs(d['captures_rejected']) or 'none'}")
    print(f"resets: {_pairs(d['resets']) or 'none'}; sign-ups: {_pairs(d['signups']) or 'none'}")
    print(f"upstream errors: {d['upstream_errors']}")
    rows = [(s["day"], s["migrated"], s["cumulative"]) for s in d["migrated_per_day"]]
    print_table(rows, ("day", "migrated", "total"))


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
