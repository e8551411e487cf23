"""Forward-auth side by side, in one run: page views of a logged-in user at the web server's speed.

For each layout, unpinned (every process on every core, as most single hosts run) and pinned
(wrk and the stub on the driver cores, nginx and authshim sharing the others), with a valid
session and one nginx worker:

- plain nginx ``proxy_pass`` to the stub upstream: the ceiling;
- nginx ``auth_request`` to authshim's lean listener (``session.forward_auth_listen``), its
  answer cached per session cookie (recipes/nginx-forward-auth), and uncached, over TCP and
  over a Unix socket; uncached to the main listener's ``/.authshim/session`` too;
- two floors, to read the others by: a check nginx answers within the subrequest (no work
  at all), and an uncached check answered at once by a C server (the stub);
- a signed identity token checked by njs in nginx, no subrequest (a prototype, measured to
  decide whether to ship it; only where Debian's libnginx-mod-http-js is installed);
- authshim standalone, ``--workers 1`` and ``2``, passing the page through itself.

The machine's speed drifts from second to second (a shared virtual machine), so the nginx
cases run in rounds, each case once per round, one after the other: a case's ratio is the
median over the rounds of its rate over plain nginx's rate in the same round. The moderate
rows give the p50 added to plain nginx's at about 1,000 requests/s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import nginx, wrk
from bench.http import MODERATE_CONNECTIONS, MODERATE_DELAY_MS, Env, _row, running, session_cookie
from bench.procs import Sampler, cpu_ticks, free_port, tree
from bench.report import Row

SCENARIO = "6 forward-auth"
CONNECTIONS = 32  # as the quick side-by-side: wrk -c32
NGINX_CASES = (
    "plain", "cached", "uncached", "unix", "main", "floor-subrequest", "floor-c", "token",
)  # fmt: skip
CALM_CASES = ("plain", "cached", "uncached", "unix")
LABELS = {
    "plain": "plain nginx proxy_pass",
    "cached": "nginx + cached forward-auth (lean listener)",
    "uncached": "nginx + uncached forward-auth (lean listener, TCP)",
    "unix": "nginx + uncached forward-auth (lean listener, Unix socket)",
    "main": "nginx + uncached forward-auth (main listener)",
    "floor-subrequest": "floor: a check nginx answers itself",
    "floor-c": "floor: an uncached check a C server answers",
    "token": "nginx + njs signed token (prototype)",
}
AUTHSHIM_CASES = ("cached", "uncached", "unix", "main")  # whose CPU is authshim's too


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def identity_token(key: str, user: str, lifetime: float = 3600) -> str:
    """The njs prototype's cookie: ``b64url("user|expires").b64url(HMAC-SHA256)``."""
    body = _b64(f"{user}|{int(time.time() + lifetime)}".encode())
    return body + "." + _b64(hmac.new(key.encode(), body.encode(), hashlib.sha256).digest())


def run(env: Env) -> list[Row]:
    """Every case in both layouts; see the module docstring."""
    rows: list[Row] = []
    for pinned in (False, True):
        rows += _layout(env, pinned)
    return rows


@dataclass
class _Case:
    """One case's runs across the rounds, and the CPU it cost per request."""

    runs: list[wrk.Result] = field(default_factory=list)
    nginx_ticks: int = 0
    authshim_ticks: int = 0

    def per_request_us(self, ticks: int) -> float:
        return ticks * 1e6 / TICKS / max(sum(r.requests for r in self.runs), 1)


TICKS = os.sysconf("SC_CLK_TCK")  # /proc's clock ticks per second


def _layout(env: Env, pinned: bool) -> list[Row]:
    # The recipe keeps nginx's cache on a tmpfs (/run): here /dev/shm where there is one.
    shm = Path("/dev/shm")
    cache = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else env.work, prefix="fa-cache-"))
    try:
        cache.chmod(0o755)
        return _measured_layout(env, pinned, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _measured_layout(env: Env, pinned: bool, cache: Path) -> list[Row]:
    sut = env.cores.sut if pinned else None
    driver = env.cores.driver if pinned else None
    layout = "pinned" if pinned else "unpinned"
    stub = f"http://127.0.0.1:{env.upstream_port}"
    key = secrets.token_hex(32) if nginx.NJS.exists() else None
    cases = [c for c in NGINX_CASES if c != "token" or key is not None]
    ports = {case: free_port() for case in cases}
    one = replace(env, workers=1)
    socket_path = env.work / f"fa-{layout}.sock"
    with (
        running(one, f"fa-{layout}", upstream=stub, cores=sut, forward_auth="tcp") as proxy,
        running(one, f"fa-unix-{layout}", upstream=stub, cores=sut,
                forward_auth=f"unix:{socket_path}") as unix_proxy,
    ):  # fmt: skip
        assert proxy.forward_auth_port is not None
        cookie = session_cookie(proxy)  # both share the store and the secret
        if key is not None:
            cookie += f"; authshim_id={identity_token(key, 'm1')}"
        with nginx.forward_auth(
            env.work / f"nginx-fa-{layout}", ports=ports, upstream=env.upstream_port,
            authshim=proxy.port, lean=proxy.forward_auth_port, lean_unix=str(socket_path),
            cache=cache, cores=sut, token_key=key,
        ) as nginx_pid:  # fmt: skip
            urls = {case: f"http://127.0.0.1:{ports[case]}/small" for case in cases}
            for case in cases:
                _check(urls[case], cookie)
                wrk.run(urls[case], seconds=1, connections=CONNECTIONS, headers=(cookie,),
                        cores=driver)  # fmt: skip  # warm-up
            checker = {"unix": unix_proxy.pid}
            measured = _rounds(env, urls, cookie, driver, nginx_pid, proxy.pid, checker)
            calm = {
                case: _measure(env, case, urls[case], cookie,
                               checker.get(case, proxy.pid) if case != "plain" else None,
                               driver, layout, calm=True)
                for case in CALM_CASES
            }  # fmt: skip
    rows = _round_rows(measured, layout)
    for workers in (1, 2):
        with running(replace(env, workers=workers), f"fa-w{workers}-{layout}", upstream=stub,
                     cores=sut) as standalone:  # fmt: skip
            case = f"authshim --workers {workers}"
            row = _measure(env, case, standalone.url("/small"), session_cookie(standalone),
                           standalone.pid, driver, layout)  # fmt: skip
            row.ratio = f"{row.rate / rows[0].rate:.2f}x plain nginx (one run)"  # type: ignore[operator]
            rows.append(row)
    base = calm["plain"].p50
    for case, row in calm.items():
        row.ratio = "(base)" if case == "plain" else f"+{row.p50 - base:.3f} ms p50"  # type: ignore[operator]
    rows += calm.values()
    for row in rows:
        row.cores = env.cores_label(pinned)
    return rows


def _rounds(
    env: Env, urls: dict[str, str], cookie: str, driver: Sequence[int] | None,
    nginx_pid: int, authshim_pid: int, checker: dict[str, int],
) -> dict[str, _Case]:  # fmt: skip
    """Each case once per round, for ``env.seconds`` in all, counting nginx's and authshim's
    CPU ticks during each case's runs."""
    count = max(2, int(env.seconds // 2))
    seconds = max(1.0, env.seconds / count)
    measured = {case: _Case() for case in urls}
    for _ in range(count):
        for case, url in urls.items():
            pids = [*tree(nginx_pid)], [*tree(checker.get(case, authshim_pid))]
            before = cpu_ticks()
            r = wrk.run(url, seconds=seconds, connections=CONNECTIONS, headers=(cookie,),
                        cores=driver)  # fmt: skip
            after = cpu_ticks()
            spent = [sum(after.get(p, 0) - before.get(p, 0) for p in group) for group in pids]
            m = measured[case]
            m.runs.append(r)
            m.nginx_ticks += spent[0]
            m.authshim_ticks += spent[1] if case in AUTHSHIM_CASES else 0
    return measured


def _round_rows(measured: dict[str, _Case], layout: str) -> list[Row]:
    plain = measured["plain"].runs
    rows = []
    for case, m in measured.items():
        merged = wrk.merge(m.runs)
        ratios = sorted(r.rps / p.rps for r, p in zip(m.runs, plain, strict=True))
        row = Row(
            SCENARIO, f"{layout}: {LABELS[case]}, saturated c{CONNECTIONS}", merged.rps,
            "req/s", merged.p50, merged.p99,
            raw={**merged.row(), "rounds": [r.row() for r in m.runs], "ratios": ratios},
        )  # fmt: skip
        if case != "plain":
            row.ratio = f"{statistics.median(ratios):.2f}x plain nginx"
        notes = [f"{len(ratios)} rounds"]
        if case != "plain":
            notes.append(f"ratios {ratios[0]:.2f}-{ratios[-1]:.2f}")
        notes.append(f"nginx {m.per_request_us(m.nginx_ticks):.0f} µs CPU/req")
        if case in AUTHSHIM_CASES:
            notes.append(f"authshim {m.per_request_us(m.authshim_ticks):.0f} µs CPU/req")
        if merged.errors or merged.non_2xx:
            notes.append(f"errors {merged.errors}, non-2xx {merged.non_2xx}")
        row.note = "; ".join(notes)
        rows.append(row)
    return rows


def _check(url: str, cookie: str) -> None:
    """The case answers 200 for the session before it is measured (no 401s counted as speed)."""
    r = wrk.run(url, seconds=1, connections=4, headers=(cookie,))
    if r.non_2xx or not r.requests:
        raise RuntimeError(f"{url}: {r.statuses} with a valid session")


def _measure(
    env: Env, case: str, url: str, cookie: str, pid: int | None,
    driver: Sequence[int] | None, layout: str, calm: bool = False,
) -> Row:  # fmt: skip
    header = (cookie,)
    wrk.run(url, seconds=1, connections=CONNECTIONS, headers=header, cores=driver)  # warm-up
    with Sampler(pid) as s:
        r = wrk.run(
            url, seconds=env.seconds, headers=header, cores=driver,
            connections=MODERATE_CONNECTIONS if calm else CONNECTIONS,
            script=wrk.delay_script(MODERATE_DELAY_MS) if calm else "",
        )  # fmt: skip
    load = "moderate" if calm else f"saturated c{CONNECTIONS}"
    label = LABELS.get(case, case + " standalone")
    return _row(SCENARIO, f"{layout}: {label}, {load}", r, s)
