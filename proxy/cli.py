"""The ``authshim`` command: small and boring argparse; ``main(argv) -> int``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Sequence

from proxy import log, server
from proxy.commands.common import existing_store
from proxy.commands.store import masked
from proxy.config import load_config, load_store_config
from proxy.errors import ConfigError
from proxy.modes import read_mode, write_mode
from store.base import MODES
from store.errors import StoreError

DEFAULT_CONFIG = os.environ.get("AUTHSHIM_CONFIG", "authshim.toml")

# Command groups kept in modules of their own: each has ``register(subparsers)``, which adds its
# parsers and sets ``run(args) -> int`` on them with ``set_defaults``.
COMMAND_MODULES: tuple[str, ...] = (
    "proxy.commands.discover",
    "proxy.commands.store",
    "proxy.commands.lookup",
    "proxy.commands.users",  # users ..., stats (admin issue)
    "proxy.commands.importer",  # import FILE (issue 17)
    "proxy.commands.rules",  # rules test (issue 16)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authshim",
        description="Move a site's users off its legacy login, one login at a time.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the proxy in front of the legacy app")
    serve.add_argument(
        "--config", default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)"
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the port with SO_REUSEPORT (default: %(default)s)",
    )

    check = sub.add_parser(
        "check-config", help="check a config file and print its problems or 'ok'"
    )
    check.add_argument("file")
    check.add_argument(
        "--connect",
        action="store_true",
        help="also try the store, the upstream and the look-up, and say what answered",
    )

    mode = sub.add_parser("mode", help="show or switch the migration mode (migrate or cutover)")
    mode.add_argument("mode", nargs="?", choices=MODES)
    where = mode.add_mutually_exclusive_group()
    where.add_argument("--config", default=DEFAULT_CONFIG, help="read [store] from this config")
    where.add_argument(
        "--store", help="a store URL instead of a config, e.g. sqlite:///./authshim.db"
    )
    mode.add_argument("--json", action="store_true", help='print {"mode": ...} for scripts')

    demo = sub.add_parser("demo", help="run a demo legacy site with authshim in front of it")
    demo.add_argument(
        "--port", type=int, default=8080, help="authshim's port (default: %(default)s)"
    )
    demo.add_argument("--legacy-port", type=int, default=8000, help="the demo site's port")
    demo.add_argument("--admin-port", type=int, default=8081, help="the dashboard's port")
    demo.add_argument("--dir", help="keep the demo's store here (default: a new temporary folder)")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one authshim command and return its exit status."""
    try:
        status = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left early (`authshim stats | head`): no traceback, and nothing more to
        # flush at exit; 141 is what a shell reports for a command ended by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return status


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "run"):
            return int(args.run(args))
        if args.command == "serve":
            return _serve(args.config, args.workers)
        if args.command == "check-config":
            return _check_config(args.file, connect=args.connect)
        if args.command == "mode":
            return asyncio.run(_mode(args))
        if args.command == "demo":
            from proxy.demo import run_demo

            return run_demo(
                port=args.port,
                legacy_port=args.legacy_port,
                admin_port=args.admin_port,
                folder=args.dir,
            )
    except ConfigError as exc:
        _problems(exc)
        return 2
    except StoreError as exc:
        print(f"authshim: store error: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)  # argparse only lets known commands through


def _problems(exc: ConfigError) -> None:
    print(f"authshim: the config has {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


def _serve(path: str, workers: int) -> int:
    config = load_config(path)
    log.setup(config.log.level)
    return server.serve(config, workers=workers)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _check_config(path: str, *, connect: bool) -> int:
    config = load_config(path)
    print("ok")
    if connect:
        from proxy.commands import connect as connections

        sys.stdout.flush()
        return connections.run(config, sys.stdout)
    return 0


async def _mode(args: argparse.Namespace) -> int:
    if args.store:
        url, default = args.store, "migrate"
    else:
        store_config, migration = load_store_config(args.config)
        url, default = store_config.url, migration.mode
    async with existing_store(url) as store:
        before = await read_mode(store, default)
        if args.mode:
            await write_mode(store, args.mode)
        mode = await read_mode(store, default)
    where = masked(url)
    print(json.dumps({"mode": mode, "store": where}) if args.json else mode)
    if args.mode:
        # Which store changed, so that a mistyped --store or --config cannot pass unseen
        # (on stderr: scripts read the mode alone from stdout).
        print(f"authshim: {where}: mode {mode} (was {before})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
