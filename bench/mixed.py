"""Scenario 7: the locustfile's realistic mix against authshim, watching its memory.

Memory growth is the slope of authshim's RSS after a warm-up (the first fifth of the run),
fitted over the samples; a leak shows as a steady climb, a cache as an early step.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from bench.http import Env, running
from bench.procs import ROOT, Sampler
from bench.report import Row
from bench.seed import mail_folder


def _slope_mib_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (MiB) over time (minutes)."""
    if len(samples) < 2:
        return 0.0
    xs = [t / 60 for t, _ in samples]
    ys = [kib / 1024 for _, kib in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def locust(
    host: str,
    users_csv: Path,
    *,
    seconds: int,
    users: int,
    out: Path,
    mail: Path | None = None,
    locustfile: str = "locustfile.py",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the locustfile headless against ``host``; its CSV stats land at ``out``_stats.csv.
    With ``mail``, authshim's mail folder, password resets follow the mailed links."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / locustfile), "--headless",
        "-u", str(users), "-r", str(max(users // 4, 1)), "-t", f"{seconds}s", "-H", host,
        "--csv", str(out), "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5",
    ]  # fmt: skip
    env = {**os.environ, "AUTHSHIM_BENCH_USERS": str(users_csv), **(env or {})}
    if mail is not None:
        env["AUTHSHIM_BENCH_MAIL"] = str(mail)
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False,
        timeout=seconds + 60,
    )  # fmt: skip


def stats(out: Path) -> dict[str, dict[str, str]]:
    """locust's ``_stats.csv`` as ``{name: row}`` (the total is ``Aggregated``)."""
    with Path(f"{out}_stats.csv").open(newline="") as f:
        return {f"{r['Type']} {r['Name']}".strip(): r for r in csv.DictReader(f)}


def run(env: Env, users_csv: Path, *, seconds: int, users: int) -> list[Row]:
    """Rows for the whole mix and for page views, with authshim's memory over the run."""
    upstream = f"http://127.0.0.1:{env.legacy_port}"
    with running(env, "mixed", upstream=upstream) as proxy, Sampler(proxy.pid, 1.0) as s:
        done = locust(proxy.url(""), users_csv, seconds=seconds, users=users,
                      out=env.work / "locust", mail=mail_folder(env.work))  # fmt: skip
    if done.returncode not in (0, 1):  # 1: some requests failed, reported below
        raise RuntimeError(f"locust failed ({done.returncode}): {done.stderr[-2000:]}")
    table = stats(env.work / "locust")
    total = table["Aggregated"]
    warm = [x for x in s.samples if x[0] >= seconds / 5]
    slope = _slope_mib_per_min(warm)
    first, last = (warm[0][1] / 1024, warm[-1][1] / 1024) if warm else (0.0, 0.0)
    rows = [
        Row("7 memory", f"locust mix, {users} users, {seconds} s",
            float(total["Requests/s"]), "req/s", float(total["50%"]), float(total["99%"]),
            ratio=f"{slope:+.2f} MiB/min after warm-up", rss_mib=s.peak_mib,
            cores=env.cores_label(False),
            note=f"RSS {first:.0f} -> {last:.0f} MiB; {total['Request Count']} requests, "
                 f"{total['Failure Count']} failed",
            raw={"samples": s.samples, "locust": table,
                 "failures": Path(f"{env.work / 'locust'}_failures.csv").read_text()}),
    ]  # fmt: skip
    for name in sorted(table):
        if name == "Aggregated":
            continue
        r = table[name]
        rows.append(
            Row(
                "7 memory",
                f"  {name}",
                float(r["Requests/s"]),
                "req/s",
                float(r["50%"]),
                float(r["99%"]),
                note=f"{r['Request Count']} requests, {r['Failure Count']} failed",
            )
        )
    return rows
