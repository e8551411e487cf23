"""``authshim lookup EMAIL [--username] [--config FILE]``: run the legacy look-up once, so that
an operator can check ``[lookup]`` and ``[profile]`` before relying on them.

Exit status: 0 found, 1 not found (a 404, or a list with no element that has the
identifier), 2 a config problem, 3 the look-up failed (any other answer, none, or a list with
more than one such element), which authshim never takes for "not found".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

import aiohttp
import orjson

from proxy.cli import DEFAULT_CONFIG
from proxy.config import Config, load_config
from proxy.errors import LookupFailed
from proxy.legacy_db import create_source
from proxy.legacy_db.lookup import build_lookup
from proxy.lookup import LegacyUser, Received
from store.errors import RejectedCapture
from store.validation import normalise_identifier, validate_capture


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lookup`` to the ``authshim`` command."""
    p = subparsers.add_parser(
        "lookup", help="look a user up in the legacy app with the [lookup] config"
    )
    p.add_argument("identifier", help="an email (a username with --username)")
    p.add_argument("--username", action="store_true", help="look up by username, not email")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run one look-up and print what authshim would make of the profile."""
    config = load_config(args.config)
    if config.lookup is None:
        print(f"authshim: {args.config} has no [lookup] section", file=sys.stderr)
        return 2
    identifier = normalise_identifier(str(args.identifier), config.migration.username_case)
    return asyncio.run(lookup_once(config, identifier, by_username=args.username, out=sys.stdout))


async def lookup_once(config: Config, identifier: str, *, by_username: bool, out: TextIO) -> int:
    """Look ``identifier`` up and describe the answer on ``out``; return the exit status."""
    assert config.lookup is not None
    field = "username" if by_username else "email"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        source = create_source(config.legacy_db)
        lookup = build_lookup(config, session, source=source)
        assert lookup is not None
        try:
            found, received = await lookup.find(field, identifier)
        except LookupFailed as exc:
            print(f"authshim: the look-up failed: {exc}", file=sys.stderr)
            return 3
        finally:
            if source is not None:
                await source.close()
    print(_received(received, field), file=out)
    if found is None:
        print(f"not found ({_why_not(received, field)})", file=out)
        return 1
    _describe(config, found, out)
    return 0


def _received(received: Received, field: str) -> str:
    said = f"received: status {received.status}"
    if received.elements is not None:
        said += f", a list of {received.elements} element{'s' * (received.elements != 1)}"
        if received.matched is not None:
            said += f", element {received.matched} has this {field}"
    return said


def _why_not(received: Received, field: str) -> str:
    if received.elements == 0:
        return "the list had 0 elements"
    if received.elements is not None:
        return f"none of the list's {received.elements} elements has this {field}"
    return f"the legacy app answered {received.status}"


def _describe(config: Config, found: LegacyUser, out: TextIO) -> None:
    print("found:", file=out)
    print(orjson.dumps(found.profile, option=orjson.OPT_INDENT_2).decode(), file=out)
    fields = found.fields
    print(f"legacy_id: {fields.legacy_id}", file=out)
    print(f"email:     {fields.email}", file=out)
    print(f"username:  {fields.username}", file=out)
    try:
        validate_capture(
            fields,
            requires_username=config.migration.requires_username,
            username_case=config.migration.username_case,
        )
        print("import rules: pass", file=out)
    except RejectedCapture as exc:
        print(f"import rules: rejected ({exc})", file=out)
