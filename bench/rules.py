"""The cost of a rule on a login: migrated users' JSON logins, one at a time, with no rule,
with one in-process Python rule and with one webhook rule (a receiver in its own process on
loopback); the rows give each one's p50 and the p50 it adds to the login with none.

argon2 runs at cheap parameters here, so that the rule's own cost is not lost in argon2's
noise on a shared machine; the three cases are interleaved in rounds for the same reason.

    python -m bench.rules [--logins 600]       standalone (no wrk or nginx needed)
    python -m bench --only rules                as one scenario of the whole bench
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.procs import free_port, python, started
from bench.report import Row, table
from bench.seed import Argon2, seed_sqlite, shared_hash
from bench.stubs import DOMAIN, PASSWORD
from proxy.app import create_app
from proxy.config import parse_config
from proxy.rules.signature import HEADER, verify

SECRET = "bench-webhook-secret-0123456789"
CHEAP = Argon2(time_cost=1, memory_cost=1024, parallelism=1)
USERS = 50
ROUNDS = 6
CASES = ("none", "python", "webhook")


def allow_rule(context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The in-process rule measured: reads the profile, adds one identity value."""
    return {"identity": {"X-Forwarded-Groups": str(context["user"]["profile"].get("id", ""))}}


def _config(store_url: str, case: str, hook_url: str) -> Any:
    raw: dict[str, Any] = {
        "upstream": {"url": "http://127.0.0.1:9"},
        "store": {"url": store_url},
        "login": [{
            "path": "/api/login", "format": "json", "identifier": "email", "password": "password",
            "success": {"status": [200], "json": "/ok"}, "profile": {"json": "/user"},
            "answer": {"json": {"ok": True}},
            "failure": {"status": 401, "json": {"error": "invalid credentials"}},
        }],
        "session": {"secret": "bench-session-secret-0123456789abcdef", "secure": False},
        "identity": {"X-Forwarded-Email": "email"},
        "passwords": {"time_cost": CHEAP.time_cost, "memory_cost": CHEAP.memory_cost,
                      "workers": 1},
        "limits": {"enabled": False},
    }  # fmt: skip
    common = {"name": case, "identity_headers": ["X-Forwarded-Groups"], "ttl": "5m"}
    if case == "python":
        raw["rules"] = [{**common, "call": "bench.rules:allow_rule"}]
    elif case == "webhook":
        raw["rules"] = [{**common, "url": hook_url, "secret": SECRET}]
    return parse_config(raw, {})


async def _measure(store_url: str, hook_url: str, logins: int) -> dict[str, list[float]]:
    servers = {}
    for case in CASES:
        server = TestServer(create_app(_config(store_url, case, hook_url)), host="127.0.0.1")
        await server.start_server()
        servers[case] = server
    times: dict[str, list[float]] = {case: [] for case in CASES}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:

            async def login(case: str, i: int) -> float:
                body = {"email": f"m{i % USERS + 1}@{DOMAIN}", "password": PASSWORD}
                started_at = time.perf_counter()
                async with client.post(servers[case].make_url("/api/login"), json=body) as r:
                    await r.read()
                    assert r.status == 200, r.status
                return (time.perf_counter() - started_at) * 1000

            for case in CASES:  # warm-up: connections, caches, the webhook's keep-alive pool
                for i in range(30):
                    await login(case, i)
            per_round = max(logins // ROUNDS, 1)
            for _ in range(ROUNDS):
                for case in CASES:
                    times[case] += [await login(case, i) for i in range(per_round)]
    finally:
        for server in servers.values():
            await server.close()
    return times


def run(work: Path, logins: int = 600) -> list[Row]:
    """The three rows (store and receiver made under ``work``)."""
    seed_sqlite(work / "rules.db", USERS, shared_hash(CHEAP))
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/hook"
    receiver = python("-m", "bench.rules", "--receiver", str(port))
    with started(receiver, port, work / "receiver.log"):
        times = asyncio.run(_measure(f"sqlite:///{work / 'rules.db'}", hook_url, logins))
    base = statistics.median(times["none"])
    labels = {"none": "login, no rule", "python": "login + 1 in-process rule",
              "webhook": "login + 1 webhook rule (loopback)"}  # fmt: skip
    rows = []
    for case in CASES:
        ms = sorted(times[case])
        p50, p99 = statistics.median(ms), ms[int(len(ms) * 0.99) - 1]
        added = "" if case == "none" else f"+{p50 - base:.2f} ms p50 per rule"
        rows.append(Row(
            scenario="rules", case=labels[case], rate=len(ms) / (sum(ms) / 1000),
            unit="logins/s (one at a time)", p50=p50, p99=p99, ratio=added,
            note="argon2 t=1 m=1MiB; cases interleaved in rounds",
            raw={"samples": len(ms), "added_p50_ms": p50 - base},
        ))  # fmt: skip
    return rows


def _receiver(port: int) -> None:
    """A webhook receiver that checks the signature and allows, with one identity value."""

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, request.headers.get(HEADER, ""), body):
            return web.Response(status=401)
        return web.json_response({"identity": {"X-Forwarded-Groups": "staff"}})

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rules")
    p.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    p.add_argument("--logins", type=int, default=600, help="measured logins per case")
    args = p.parse_args(argv)
    if args.receiver:
        _receiver(args.receiver)
        return 0
    with tempfile.TemporaryDirectory(prefix="authshim-bench-rules-") as tmp:
        print(table(run(Path(tmp), args.logins)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
