"""Scenarios 2 to 5 over HTTP: local logins, forward-and-capture, pass-through, forward-auth.

authshim always runs as its own ``authshim serve`` process. Login scenarios give it every core
(its argon2 pool needs them; the load generator's share is small beside argon2's); the other
scenarios pin the load generator and the stubs to the driver cores, and the proxy under test,
authshim or nginx, to the remaining ones.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import nginx, wrk
from bench.procs import (
    Cores,
    Sampler,
    authshim,
    free_port,
    started,
    tree,
    wait_port,
    wait_socket,
)
from bench.report import Row
from bench.seed import Argon2, email, write_config
from bench.stubs import PASSWORD

MODERATE_CONNECTIONS = 8
MODERATE_DELAY_MS = 8  # 8 connections, each waiting 8 ms between requests: <= ~1,000 req/s
FOREIGN_NOTE = 0.1  # cores used by other processes worth a note beside a figure


@dataclass
class Env:
    """What every HTTP scenario shares: the work folder, ports, cores and run lengths."""

    work: Path
    cores: Cores
    workers: int
    argon2: Argon2
    store_url: str
    users: int
    seconds: float
    legacy_port: int
    upstream_port: int
    login_delay: float

    def cores_label(self, pinned: bool) -> str:
        if not pinned:
            return f"all {len(self.cores.all)} shared"
        return f"client {_c(self.cores.driver)} / proxy {_c(self.cores.sut)}"


def _c(cores: Sequence[int]) -> str:
    return ",".join(map(str, cores))


@dataclass
class Authshim:
    port: int
    pid: int
    forward_auth_port: int | None = None  # the lean listener's, when it runs

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def running(
    env: Env,
    name: str,
    *,
    upstream: str,
    cores: Sequence[int] | None = None,
    failure_floor: str = "auto",
    forward_auth: str | None = None,
) -> Iterator[Authshim]:
    """``authshim serve --workers N`` with a generated config, until the block ends; with
    the lean forward-auth listener too: ``"tcp"`` on a port of its own, or ``"unix:PATH"``."""
    port = free_port()
    fa_port = free_port() if forward_auth == "tcp" else None
    fa_listen = f"127.0.0.1:{fa_port}" if fa_port else forward_auth
    config = write_config(
        env.work / f"{name}.toml", port=port, upstream=upstream, store=env.store_url,
        argon2=env.argon2, failure_floor=failure_floor, forward_auth=fa_listen,
    )  # fmt: skip
    argv = authshim(config, env.workers)
    with started(argv, port, env.work / f"{name}.log", cores=cores) as proc:
        deadline = time.monotonic() + 20
        while len(tree(proc.pid)) < env.workers + (env.workers > 1):
            if time.monotonic() > deadline:
                raise RuntimeError(f"authshim did not start {env.workers} workers")
            time.sleep(0.05)
        time.sleep(0.5 if env.workers > 1 else 0.1)  # every worker bound and warm
        if fa_port is not None:
            wait_port(fa_port, proc)
        elif fa_listen is not None:
            wait_socket(fa_listen.removeprefix("unix:"), proc)
        yield Authshim(port, proc.pid, fa_port)


def session_cookie(proxy: Authshim, name: str = "m1") -> str:
    """Log ``name`` in through authshim and return its ``Cookie`` header."""
    body = json.dumps({"email": email(name), "password": PASSWORD}).encode()
    req = urllib.request.Request(
        proxy.url("/api/login"), data=body,
        headers={"Content-Type": "application/json", "X-Forwarded-For": "10.255.255.1"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as answer:
        cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
    return f"Cookie: {cookie}"


def settle(proxy: Authshim, within: float = 60) -> None:
    """Wait until a login succeeds again: the previous load's backlog has drained."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            session_cookie(proxy)
            return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.5)
    raise RuntimeError(f"authshim did not recover within {within} s")


def _row(scenario: str, case: str, r: wrk.Result, s: Sampler, unit: str = "req/s") -> Row:
    row = Row(
        scenario, case, r.rps, unit, r.p50, r.p99, rss_mib=s.peak_mib,
        raw={**r.row(), "cpu": s.cpu, "foreign_cores": s.foreign},
    )  # fmt: skip
    if s.pid is not None:
        row.note = f"authshim CPU {s.cpu:.0%}"
    if r.errors or r.non_2xx:
        row.note += f"; errors {r.errors}, non-2xx {r.non_2xx}"
    if s.foreign > FOREIGN_NOTE:
        row.note += f"; other load {s.foreign:.1f} cores"
    row.note = row.note.removeprefix("; ")
    return row


OVERLOADS = (
    ("overload, 512 conns, retry at once", 512, ""),
    ("overload, 512 conns, honour Retry-After", 512, wrk.RETRY_AFTER),
)


def local_logins(
    env: Env, first: tuple[float, float], measure_limit: Callable[[], tuple[float, float]]
) -> list[Row]:
    """Migrated users' logins at saturation, then past the queue limit (load shedding).

    Two ratios: logins/s over the all-core verifies/s (wall clock, true on a quiet machine),
    and logins per authshim CPU-second over verifies per CPU-second (the share of authshim's
    CPU that went to argon2, which holds on a shared machine too).

    On a virtual machine the limit moves by up to a tenth within seconds, so the saturated
    logins run in ``WINDOWS`` windows with the limit read again after each (``first`` is
    scenario 1's reading): each window is compared with the mean of the readings either side
    of it, the one before and the one after, and the row adds up the windows. The row also
    gives the ratio to the highest reading of all, which such swings push down.
    """
    rows = []
    with running(env, "logins", upstream=f"http://127.0.0.1:{env.legacy_port}") as proxy:
        script = wrk.login_script("/api/login", users=env.users)
        wrk.run(proxy.url("/api/login"), seconds=1, connections=8, script=script)  # warm-up
        readings, windows = [first], []
        for _ in range(WINDOWS):
            settle(proxy)
            with Sampler(proxy.pid) as s:
                r = wrk.run(
                    proxy.url("/api/login"), seconds=env.seconds, connections=32, threads=2,
                    script=script,
                )  # fmt: skip
            windows.append((r, s))
            readings.append(measure_limit())
        rows.append(_saturated(env, windows, readings, proxy.pid))
        limit, per_cpu_s = max(r[0] for r in readings), max(r[1] for r in readings)
        for case, connections, extra in OVERLOADS:
            settle(proxy)
            with Sampler(proxy.pid) as s:
                r = wrk.run(
                    proxy.url("/api/login"), seconds=env.seconds * 1.5, connections=connections,
                    threads=2, script=script + extra,
                )  # fmt: skip
            row = _login_row(env, case, r, s)
            rate = r.statuses.get("200", 0) / r.seconds
            per_cpu = rate / max(s.cpu, 1e-9)
            row.ratio = f"{rate / limit:.0%} of argon2 limit; {per_cpu / per_cpu_s:.0%} per CPU-s"
            row.raw.update(logins_per_cpu_s=per_cpu, limit=limit, limit_per_cpu_s=per_cpu_s)
            rows.append(row)
    return rows


WINDOWS = 3  # saturated login windows, the argon2 limit read after each


def _saturated(
    env: Env,
    windows: list[tuple[wrk.Result, Sampler]],
    readings: list[tuple[float, float]],
    pid: int,
) -> Row:
    """One row for the saturated windows, each against the mean of the readings around it."""
    expected = expected_cpu = logins = cpu_s = 0.0
    per_window = []
    for (r, s), before, after in zip(windows, readings, readings[1:], strict=False):
        ok = r.statuses.get("200", 0)
        limit, per_cpu_s = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        logins += ok
        expected += limit * r.seconds
        cpu_s += s.cpu * r.seconds
        expected_cpu += per_cpu_s * s.cpu * r.seconds
        per_window.append(ok / r.seconds / limit)
    merged = wrk.merge([r for r, _ in windows])
    sampled = Sampler(
        pid=pid, samples=[x for _, s in windows for x in s.samples],
        cpu=cpu_s / merged.seconds,
        foreign=sum(s.foreign * r.seconds for r, s in windows) / merged.seconds,
    )  # fmt: skip
    case = f"saturated, 32 conns, {len(windows)} x {windows[0][0].seconds:.0f} s"
    row = _login_row(env, case, merged, sampled)
    to_highest = logins / merged.seconds / max(r[0] for r in readings)
    row.ratio = f"{logins / expected:.0%} of argon2 limit; {logins / expected_cpu:.0%} per CPU-s"
    row.note = (
        f"windows {min(per_window):.0%}-{max(per_window):.0%}; {to_highest:.0%} of the "
        f"highest reading; limit read {len(readings)} times: "
        + ", ".join(f"{r[0]:.0f}" for r in readings) + " verifies/s; " + row.note
    )  # fmt: skip
    row.raw.update(
        readings=readings, per_window=per_window, ratio=logins / expected,
        ratio_per_cpu_s=logins / expected_cpu, ratio_to_highest=to_highest,
    )  # fmt: skip
    return row


def _login_row(env: Env, case: str, r: wrk.Result, s: Sampler) -> Row:
    row = _row("2 local logins", case, r, s, unit="logins/s")
    row.rate = r.statuses.get("200", 0) / r.seconds
    row.cores = env.cores_label(False)
    shed = r.statuses.get("503", 0) / max(r.requests, 1)
    row.note = (f"503 {shed:.0%}, timeouts {r.timeouts}, max {r.max:.0f} ms, "
                f"statuses {r.statuses}; " + row.note)  # fmt: skip
    return row


def capture(env: Env, hash_ms: float) -> list[Row]:
    """First-time logins: the legacy stub alone, then through authshim (forward + capture)."""
    legacy = f"http://127.0.0.1:{env.legacy_port}"
    stamp = str(int(time.time()))
    with Sampler() as s:
        direct = wrk.run(
            legacy + "/api/login", seconds=env.seconds, connections=2,
            script=wrk.login_script("/api/login", fresh_prefix=f"d{stamp}t"),
        )  # fmt: skip
    rows = [_row("3 capture", "legacy stub alone", direct, s, unit="logins/s")]
    rows[0].note = f"login delay {env.login_delay * 1000:.0f} ms; " + rows[0].note
    with running(env, "capture", upstream=legacy) as proxy, Sampler(proxy.pid) as s:
        r = wrk.run(
            proxy.url("/api/login"), seconds=env.seconds, connections=2,
            script=wrk.login_script("/api/login", fresh_prefix=f"c{stamp}t"),
        )  # fmt: skip
    row = _row("3 capture", "via authshim (captured)", r, s, unit="logins/s")
    row.ratio = f"+{r.p50 - direct.p50:.1f} ms p50 (1 hash = {hash_ms:.1f} ms)"
    row.note = f"statuses {r.statuses}; " + row.note
    row.cores = env.cores_label(False)
    rows.append(row)
    return rows


def passthrough(env: Env) -> list[Row]:
    """GETs direct to the upstream, through authshim and through nginx, at two loads."""
    sut, driver = env.cores.sut, env.cores.driver
    nginx_port, auth_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{env.upstream_port}"
    rows: list[Row] = []
    with running(env, "passthrough", upstream=upstream, cores=sut) as proxy:
        cookie = session_cookie(proxy)
        with nginx.peer(
            env.work / "nginx-peer", port=nginx_port, auth_port=auth_port,
            upstream=env.upstream_port, authshim=proxy.port, cores=sut,
        ):  # fmt: skip
            targets = [
                ("direct", upstream, None, ()),
                ("authshim", proxy.url(), proxy.pid, ()),
                ("nginx", f"http://127.0.0.1:{nginx_port}/", None, ()),
            ]
            for size in ("small", "large"):
                rows += _compare(env, targets, size)
            rows += _compare(env, [("authshim + session", proxy.url(), proxy.pid, (cookie,))],
                             "small")  # fmt: skip
            rows += _forward_auth(env, f"http://127.0.0.1:{auth_port}/small", cookie, proxy.pid)
    for row in rows:
        row.cores = env.cores_label(True) if row.case.split()[0] != "direct" else _c(driver)
    return rows


def _compare(
    env: Env, targets: Sequence[tuple[str, str, int | None, tuple[str, ...]]], size: str
) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for name, base, pid, headers in targets:
        url = base.rstrip("/") + "/" + size
        wrk.run(url, seconds=1, connections=16, headers=headers, cores=env.cores.driver)  # warm
        for load in ("saturated", "moderate"):
            moderate = load == "moderate"
            with Sampler(pid) as s:
                r = wrk.run(
                    url, seconds=env.seconds, cores=env.cores.driver, headers=headers,
                    connections=MODERATE_CONNECTIONS if moderate else 64,
                    script=wrk.delay_script(MODERATE_DELAY_MS) if moderate else "",
                )  # fmt: skip
            rows[(name, load)] = _row("4 pass-through", f"{name} {size}, {load}", r, s)
    for (name, load), row in rows.items():
        direct, peer = rows.get(("direct", load)), rows.get(("nginx", load))
        if name == "direct" or direct is None:
            continue
        if load == "moderate":
            row.ratio = f"+{row.p50 - direct.p50:.2f} ms p50 vs direct"  # type: ignore[operator]
        else:
            row.ratio = f"{row.rate / direct.rate:.2f}x direct"  # type: ignore[operator]
            if peer is not None and name != "nginx":
                row.ratio += f", {row.rate / peer.rate:.2f}x nginx"  # type: ignore[operator]
    return list(rows.values())


def _forward_auth(env: Env, url: str, cookie: str, pid: int) -> list[Row]:
    wrk.run(url, seconds=1, connections=16, headers=(cookie,), cores=env.cores.driver)
    with Sampler(pid) as s:
        r = wrk.run(url, seconds=env.seconds, connections=64, headers=(cookie,),
                    cores=env.cores.driver)  # fmt: skip
    return [_row("5 forward-auth", "nginx auth_request + authshim, saturated", r, s)]
