"""Scenario 7: failed logins of three kinds, side by side in one run: a migrated user's wrong
password (judged by argon2), an unmigrated user's (judged by the legacy app) and an unknown
user's. Their medians should not tell the three apart (``login.failure_floor``, see
docs/security.md); interleaved, one at a time, so that drift hits every kind alike.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from bench.http import Env, running
from bench.report import Row
from bench.seed import email
from bench.stubs import WRONG_PASSWORD

SAMPLES = 60


def _timed(url: str, identifier: str, client: str) -> tuple[float, int]:
    body = json.dumps({"email": identifier, "password": WRONG_PASSWORD}).encode()
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", "X-Forwarded-For": client}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return (time.perf_counter() - started) * 1000, status


def run(env: Env, samples: int = SAMPLES) -> list[Row]:
    """The three kinds' medians with the learned floor (the default), then without a floor."""
    return _run(env, samples, "auto") + _run(env, samples, "0s")


def _run(env: Env, samples: int, floor: str) -> list[Row]:
    """Medians of the three kinds of failure through one authshim, and their spread."""
    legacy = f"http://127.0.0.1:{env.legacy_port}"
    kinds: dict[str, Callable[[int], str]] = {
        "migrated user, wrong password": lambda i: email(f"m{i % env.users + 1}"),
        "unmigrated user, wrong password": lambda i: email(f"fail-u{i}"),
        "unknown user": lambda i: f"nobody{i}@elsewhere.example",
    }
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    statuses: dict[str, set[int]] = {kind: set() for kind in kinds}
    with running(env, f"failures-{floor}", upstream=legacy, failure_floor=floor) as proxy:
        url = proxy.url("/api/login")
        for i in range(samples):
            for n, (kind, who) in enumerate(kinds.items()):
                # One simulated client per attempt: the brute-force limits stay out of it.
                ms, status = _timed(url, who(i), f"10.7.{n}.{i % 250 + 1}")
                times[kind].append(ms)
                statuses[kind].add(status)
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    base = medians["unknown user"]
    rows = []
    for kind, values in times.items():
        p99 = sorted(values)[min(len(values) - 1, int(0.99 * len(values)))]
        row = Row("7 failed logins", f"floor {floor}: {kind}", None, "", medians[kind], p99)
        row.ratio = f"{medians[kind] / base:.2f}x the unknown user's p50"
        row.note = f"{len(values)} samples, statuses {sorted(statuses[kind])}"
        row.raw = {"median_ms": medians[kind], "samples_ms": [round(v, 2) for v in values]}
        rows.append(row)
    spread = max(medians.values()) - min(medians.values())
    rows.append(Row("7 failed logins", f"floor {floor}: spread of the medians", None, "", spread,
                    None,
                    note=f"login delay {env.login_delay * 1000:.0f} ms"))  # fmt: skip
    return rows
