"""``python -m bench [--quick]``: every scenario on loopback, one table, one JSON file.

Needs ``wrk`` and ``nginx`` from Debian (``apt-get install -y nginx-light wrk``) and the
``bench`` extra (``pip install -e '.[bench]'``); installs nothing itself. See
docs/performance.md for what each figure means and what bounds it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import argon, failures, forwardauth, http, mixed, nginx, rules, storebench
from bench.procs import Cores, Missing, Sampler, free_port, need, python, started
from bench.report import Row, machine, save, table
from bench.seed import Argon2, seed_sqlite, shared_hash, write_csv

RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test?schema=bench"
BUSY = 0.3  # cores used by other processes before the bench starts worth a warning
SCENARIOS = (
    "argon2", "logins", "capture", "failures", "passthrough", "forwardauth", "store", "mixed",
    "rules",
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    seconds: float  # each wrk run
    users: int  # migrated users in the proxy's store
    unmigrated: int  # first-time users in the CSV
    store_users: int
    store_ops: int
    argon_seconds: float
    mixed_seconds: int
    mixed_users: int


QUICK = Profile(2, 2_000, 1_000, 100_000, 1_000, 1, 15, 40)
FULL = Profile(10, 20_000, 5_000, 1_000_000, 5_000, 5, 180, 100)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short runs, fewer users (< 2 minutes)")
    p.add_argument("--workers", type=int, default=1, help="authshim serve --workers (default 1)")
    p.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    p.add_argument("--time-cost", type=int, default=2, help="argon2id t (default 2)")
    p.add_argument("--memory-cost", type=int, default=19456, help="argon2id m in KiB")
    p.add_argument("--parallelism", type=int, default=1, help="argon2id p (default 1)")
    p.add_argument("--login-delay", type=float, default=0.05, help="legacy login, seconds")
    p.add_argument("--postgres", default=POSTGRES, help="PostgreSQL store URL, or 'off'")
    p.add_argument("--mixed-seconds", type=int, help="length of the locust run")
    p.add_argument("--out", type=Path, help="JSON results (default bench/results/<time>.json)")
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def _postgres(url: str) -> str | None:
    if url == "off":
        return None
    if importlib.util.find_spec("asyncpg") is None:
        print("bench: asyncpg is not installed (pip install -e '.[bench,postgres]');"
              " the PostgreSQL rows are left out", file=sys.stderr)  # fmt: skip
        return None
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 5432), 1):
        return url
    print("bench: no PostgreSQL at 127.0.0.1:5432; its store rows are left out", file=sys.stderr)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        need("wrk", "wrk")
        need("nginx", "nginx-light")
        need("taskset", "util-linux")
    except Missing as exc:
        print(f"bench: {exc} (see docs/performance.md)", file=sys.stderr)
        return 2
    with Sampler() as idle:
        time.sleep(2)
    if idle.foreign > BUSY:
        print(
            f"bench: other processes use {idle.foreign:.1f} of {len(Cores.split().all)} cores;"
            " the figures will be skewed (see the 'other load' notes)",
            file=sys.stderr,
        )
    profile = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    params = Argon2(args.time_cost, args.memory_cost, args.parallelism)
    cores = Cores.split()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="authshim-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers read their files here
        phc = shared_hash(params)
        seed_sqlite(work / "authshim.db", profile.users, phc)
        users_csv = write_csv(RESULTS / "users.csv", migrated=profile.users,
                              unmigrated=profile.unmigrated)  # fmt: skip
        rows: list[Row] = []
        limits = {"hash_ms": 0.0, "verify_all": 0.0, "per_cpu_s": 0.0}
        if "argon2" in only or "logins" in only or "capture" in only:
            argon_rows, limits = argon.measure(params, phc, profile.argon_seconds)
            rows += argon_rows
        env = http.Env(
            work=work, cores=cores, workers=args.workers, argon2=params,
            store_url=f"sqlite:///{work / 'authshim.db'}", users=profile.users,
            seconds=profile.seconds, legacy_port=free_port(), upstream_port=free_port(),
            login_delay=args.login_delay,
        )  # fmt: skip
        legacy = python("-m", "bench.stubs", "--port", str(env.legacy_port),
                        "--login-delay", str(args.login_delay))  # fmt: skip
        with (
            started(legacy, env.legacy_port, work / "legacy.log", cores=cores.driver),
            nginx.upstream(work / "nginx-upstream", env.upstream_port, cores.driver),
        ):
            if "logins" in only:
                # The limit read again after each window of saturated logins: each window is
                # compared with the readings either side of it (bench/http.py).
                again = partial(argon.all_cores, params, phc, profile.argon_seconds)
                rows += http.local_logins(env, (limits["verify_all"], limits["per_cpu_s"]), again)
            if "capture" in only:
                rows += http.capture(env, limits["hash_ms"])
            if "failures" in only:
                rows += failures.run(env)
            if "passthrough" in only:
                rows += http.passthrough(env)
            if "forwardauth" in only:
                rows += forwardauth.run(env)
            if "mixed" in only:
                seconds = args.mixed_seconds or profile.mixed_seconds
                rows += mixed.run(env, users_csv, seconds=seconds, users=profile.mixed_users)
        if "store" in only:
            rows += storebench.run(
                work, profile.store_users, profile.store_ops, phc, _postgres(args.postgres)
            )
        if "rules" in only:
            rows += rules.run(work)  # the added p50 of one rule (bench/rules.py)
    took = time.monotonic() - began
    meta = {
        **machine(),
        "mode": "quick" if args.quick else "full",
        "took_s": round(took, 1),
        "other_load_at_start_cores": round(idle.foreign, 2),
        "workers": args.workers,
        "argon2": params.__dict__,
        "login_delay_ms": args.login_delay * 1000,
        "allocation": {"driver": cores.driver, "proxy": cores.sut},
        "profile": profile.__dict__,
    }
    print(table(rows))
    print(
        f"\n{meta['mode']} run, {took:.0f} s on {meta['cores']} x {meta['cpu']}; "
        f"authshim --workers {args.workers}; cores: load generator and stubs on "
        f"{list(cores.driver)}, proxy under test on {list(cores.sut)} (pass-through, "
        "forward-auth); logins, capture and the mix share all cores."
    )
    out = args.out or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    print(f"results: {save(out, meta, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
