"""A bounded soak: mixed traffic through a real authshim with faults injected, then a loss check.

Usage: ``python -m bench.soak [--duration 60] [--clients 16] [--kill-every 15] [--dir DIR]``.

It starts the legacy stub (``bench.stubs``) and ``authshim serve`` on SQLite, then runs
``--clients`` loops of mixed traffic: first logins (captures), repeat logins (answered
locally), wrong passwords, hostile bodies, session checks and pass-through pages. Faults:
every ``--kill-every`` seconds authshim is killed with SIGKILL and restarted, and the legacy
stub is frozen (SIGSTOP) for a moment between kills. At the end it prints a JSON report:
requests served, answers by status, errors by kind, and the store check: every capture a
client was told of (200 with an authshim cookie) must be stored, whole and once.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import authshim, free_port, python, stop, wait_port
from bench.stubs import PASSWORD, WRONG_PASSWORD

SECRET = "soak-secret-0123456789-abcdefghijklmnop"
HOSTILE = [
    b"\x80\xff",
    b'{"email": ' * 2000,
    b'{"email": "a@bench.test", "email": "b@bench.test", "password": "x"}',
    b'{"email": "\\ud800", "password": "\\u0000"}',
    b'{"email": "' + b"a" * 60_000 + b'", "password": "x"}',
]


def config_text(port: int, upstream: int, db: Path) -> str:
    return f"""
[server]
listen = "127.0.0.1:{port}"
[upstream]
url = "http://127.0.0.1:{upstream}"
read_timeout = "2s"
[store]
url = "sqlite:///{db}"
[[login]]
path = "/api/login"
format = "json"
identifier = "email"
password = "password"
success = {{ status = [200], json = "/ok" }}
profile = {{ json = "/user" }}
answer = {{ json = {{ ok = true }} }}
failure = {{ status = 401, json = {{ error = "invalid credentials" }} }}
[session]
secret = "env:AUTHSHIM_SECRET"
secure = false
[identity]
"X-Forwarded-User" = "username"
[passwords]
time_cost = 1
memory_cost = 4096
[limits]
login_ip = 1000000
"""


class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.port, self.upstream = free_port(), free_port()
        self.db = folder / "authshim.db"
        self.config = folder / "authshim.toml"
        self.config.write_text(config_text(self.port, self.upstream, self.db))
        self.log = (folder / "soak.log").open("ab")
        self.statuses: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.acknowledged: set[str] = set()
        self.captured_names = 0
        self.proxy: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start_proxy(self) -> None:
        env = {**os.environ, "AUTHSHIM_SECRET": SECRET}
        self.proxy = subprocess.Popen(
            authshim(self.config, 1), stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        wait_port(self.port, self.proxy)

    async def request(self, client: aiohttp.ClientSession, kind: str) -> None:
        url = f"http://127.0.0.1:{self.port}"
        body: Any = None
        data: bytes | None = None
        if kind == "capture":
            self.captured_names += 1
            name = f"soak-{os.getpid()}-{self.captured_names}"
            body = {"email": f"{name}@bench.test", "password": PASSWORD}
        elif kind == "repeat" and self.acknowledged:
            body = {"email": random.choice(sorted(self.acknowledged)), "password": PASSWORD}
        elif kind == "wrong":
            body = {"email": f"soak-{random.randint(1, 50)}@bench.test", "password": WRONG_PASSWORD}
        elif kind == "hostile":
            data = random.choice(HOSTILE)
        try:
            if kind == "page":
                response = await client.get(f"{url}/page/{random.randint(1, 9)}")
            elif kind == "session":
                response = await client.get(f"{url}/.authshim/session")
            else:
                headers = {"Content-Type": "application/json"}
                response = await client.post(
                    f"{url}/api/login", json=body, data=data, headers=None if body else headers
                )
            async with response:
                await response.read()
                self.statuses[f"{kind}:{response.status}"] += 1
                if kind == "capture" and response.status == 200 and "authshim" in response.cookies:
                    self.acknowledged.add(body["email"])
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[f"{kind}:{type(exc).__name__}"] += 1
            if isinstance(exc, aiohttp.ClientConnectorError):
                await asyncio.sleep(0.05)  # authshim is restarting: do not spin

    async def client_loop(self, deadline: float) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        kinds = ["capture", "repeat", "repeat", "wrong", "hostile", "page", "page", "session"]
        async with aiohttp.ClientSession(timeout=timeout) as client:
            while time.monotonic() < deadline:
                await self.request(client, random.choice(kinds))

    async def faults(self, stub: subprocess.Popen[bytes], deadline: float) -> None:
        every = self.args.kill_every
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every / 2)
            stub.send_signal(signal.SIGSTOP)  # the legacy app hangs: 504s, no captures
            await asyncio.sleep(min(3.0, every / 4))
            stub.send_signal(signal.SIGCONT)
            await asyncio.sleep(every / 4)
            assert self.proxy is not None
            self.proxy.send_signal(signal.SIGKILL)
            self.proxy.wait()
            self.kills += 1
            await asyncio.to_thread(self.start_proxy)

    def check_store(self) -> dict[str, Any]:
        with sqlite3.connect(self.db) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            rows = conn.execute("SELECT email, password_hash, profile FROM users").fetchall()
        emails = [r[0] for r in rows]
        whole = sum(1 for r in rows if r[1].startswith("$argon2id$") and json.loads(r[2]))
        return {
            "integrity": integrity,
            "users": len(rows),
            "duplicates": len(emails) - len(set(emails)),
            "half_written": len(rows) - whole,
            "acknowledged": len(self.acknowledged),
            "lost": sorted(self.acknowledged - set(emails)),
        }

    async def run(self) -> dict[str, Any]:
        stub_argv = python("-m", "bench.stubs", "--port", str(self.upstream))
        # Popen only forks; it returns at once, so it does not hold the loop.
        stub = subprocess.Popen(stub_argv, stdout=self.log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
        try:
            wait_port(self.upstream, stub)
            self.start_proxy()
            deadline = time.monotonic() + self.args.duration
            loops = [self.client_loop(deadline) for _ in range(self.args.clients)]
            await asyncio.gather(self.faults(stub, deadline), *loops)
        finally:
            with contextlib.suppress(ProcessLookupError):
                stub.send_signal(signal.SIGCONT)
            if self.proxy is not None:
                stop(self.proxy)
            stop(stub)
        served = sum(self.statuses.values())
        report = {
            "duration_s": self.args.duration,
            "requests_served": served,
            "kills": self.kills,
            "answers": dict(sorted(self.statuses.items())),
            "errors": dict(sorted(self.errors.items())),
            "server_errors_500": sum(n for k, n in self.statuses.items() if k.endswith(":500")),
            "store": self.check_store(),
        }
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--kill-every", type=float, default=15.0, help="seconds between kills")
    parser.add_argument("--dir", help="keep the store and log here (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="authshim-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(Soak(args, folder).run())
    print(json.dumps(report, indent=2))
    store = report["store"]
    ok = store["integrity"] == "ok" and not store["lost"] and not store["duplicates"]
    ok = ok and not store["half_written"] and report["server_errors_500"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
