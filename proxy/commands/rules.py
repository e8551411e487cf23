"""``authshim rules test --event login --user EMAIL [--config FILE]``: run the configured rules
on a stored user and print each rule's answer (one JSON line a rule), changing nothing, for
operators writing rules. Exit status: 0 allowed, 1 denied, 2 config problem, 3 no such user."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

import aiohttp
import orjson

from proxy.cli import DEFAULT_CONFIG
from proxy.commands.common import existing_store
from proxy.config import EVENTS, Config, load_config
from proxy.rules.build import create_rules
from proxy.rules.context import build_context, user_context
from store.validation import normalise_identifier


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rules test`` to the ``authshim`` command."""
    rules = subparsers.add_parser("rules", help="try the configured [[rules]]")
    sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    test = sub.add_parser("test", help="run the rules of an event on a stored user")
    test.add_argument("--event", choices=EVENTS, default="login")
    test.add_argument("--user", required=True, help="the stored user's email or username")
    test.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)")
    test.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run one event's rules and print what each answered."""
    config = load_config(args.config)
    return asyncio.run(test_rules(config, args.event, str(args.user), out=sys.stdout))


async def test_rules(config: Config, event: str, identifier: str, *, out: TextIO) -> int:
    """Print each rule's result and the verdict on ``out``; return the exit status."""
    async with existing_store(config.store.url) as store:
        user = await store.find_user(normalise_identifier(identifier))
    if user is None:
        print(f"authshim: no stored user {identifier!r}", file=sys.stderr)
        return 3
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        engine = create_rules(config, client)
        if engine is None or not engine.has(event):
            print(f"authshim: no rule runs on {event}", file=sys.stderr)
            return 0
        context = build_context(event, "test", user_context(user), client=None, route=None,
                                mode=config.migration.mode)  # fmt: skip
        verdict = await engine.run(event, context)
    for result in verdict.results:
        print(orjson.dumps(result.as_json()).decode(), file=out)
    summary = {"denied_by": verdict.denied_by, "message": verdict.message,
               "identity": verdict.identity, "app_metadata": verdict.app_metadata,
               "must_change_password": verdict.must_change_password}  # fmt: skip
    print(orjson.dumps({"verdict": summary}).decode(), file=out)
    return 1 if verdict.denied else 0
