"""Forward-auth side by side, in one run: page views of a logged-in user at the web server's speed.

For each layout, unpinned (every process on every core, as most single hosts run) and pinned
(wrk and the stub on the driver cores, nginx and authshim sharing the others), with a valid
session and one nginx worker:

- plain nginx ``proxy_pass`` to the stub upstream: the ceiling;
- nginx ``auth_request`` to authshim's ``/.authshim/session``, its answer cached per session
  cookie (recipes/nginx-forward-auth) and uncached;
- a signed identity token checked by njs in nginx, no subrequest (a prototype, measured to
  decide whether to ship it; only where Debian's libnginx-mod-http-js is installed);
- authshim standalone, ``--workers 1`` and ``2``, passing the page through itself.

Ratios are to plain nginx of the same layout; the moderate rows give the p50 added to plain
nginx's at about 1,000 requests/s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace

from bench import nginx, wrk
from bench.http import MODERATE_CONNECTIONS, MODERATE_DELAY_MS, Env, _row, running, session_cookie
from bench.procs import Sampler, free_port
from bench.report import Row

SCENARIO = "6 forward-auth"
CONNECTIONS = 32  # as the quick side-by-side: wrk -c32
NGINX_CASES = ("plain", "cached", "uncached", "token")
LABELS = {
    "plain": "plain nginx proxy_pass",
    "cached": "nginx + cached forward-auth",
    "uncached": "nginx + uncached forward-auth",
    "token": "nginx + njs signed token (prototype)",
}


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


def _layout(env: Env, pinned: bool) -> list[Row]:
    sut = env.cores.sut if pinned else None
    driver = env.cores.driver if pinned else None
    layout = "pinned" if pinned else "unpinned"
    stub = f"http://127.0.0.1:{env.upstream_port}"
    key = secrets.token_hex(32) if nginx.NJS.exists() else None
    cases = [c for c in NGINX_CASES if c != "token" or key is not None]
    ports = {case: free_port() for case in cases}
    rows: dict[str, Row] = {}
    moderate: dict[str, Row] = {}
    one = replace(env, workers=1)
    with running(one, f"fa-{layout}", upstream=stub, cores=sut) as proxy:
        cookie = session_cookie(proxy)
        if key is not None:
            cookie += f"; authshim_id={identity_token(key, 'm1')}"
        with nginx.forward_auth(
            env.work / f"nginx-fa-{layout}", ports=ports, upstream=env.upstream_port,
            authshim=proxy.port, cores=sut, token_key=key,
        ):  # fmt: skip
            for case in cases:
                url = f"http://127.0.0.1:{ports[case]}/small"
                _check(url, cookie)
                pid = proxy.pid if case in ("cached", "uncached") else None
                rows[case] = _measure(env, case, url, cookie, pid, driver, layout)
                if case != "token":
                    moderate[case] = _measure(env, case, url, cookie, pid, driver, layout, True)
    for workers in (1, 2):
        with running(replace(env, workers=workers), f"fa-w{workers}-{layout}", upstream=stub,
                     cores=sut) as proxy:  # fmt: skip
            case = f"authshim --workers {workers}"
            cookie = session_cookie(proxy)
            rows[case] = _measure(env, case, proxy.url("/small"), cookie, proxy.pid, driver,
                                  layout)  # fmt: skip
    plain, calm = rows["plain"], moderate["plain"]
    for name, row in rows.items():
        if name != "plain":
            row.ratio = f"{row.rate / plain.rate:.2f}x plain nginx"  # type: ignore[operator]
    for row in moderate.values():
        row.ratio = f"+{row.p50 - calm.p50:.3f} ms p50" if row is not calm else "(base)"  # type: ignore[operator]
    for row in [*rows.values(), *moderate.values()]:
        row.cores = env.cores_label(True) if pinned else env.cores_label(False)
    return [*rows.values(), *moderate.values()]


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
