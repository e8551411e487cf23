"""Scenario 1: what argon2id costs here, the physical limit for logins answered locally.

argon2-cffi releases the GIL while it works, so threads on all cores show the machine's limit;
a verify costs what a hash costs, and a local login is one verify.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from bench.procs import Sampler
from bench.report import Row
from bench.seed import Argon2
from bench.stubs import PASSWORD


def _verify_for(hasher_params: Argon2, phc: str, seconds: float) -> int:
    hasher = hasher_params.hasher()
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        hasher.verify(phc, PASSWORD)
        done += 1
    return done


def measure(params: Argon2, phc: str, seconds: float) -> tuple[list[Row], dict[str, float]]:
    """Rows for one thread and all cores, and the figures other scenarios compare with.

    Besides verifies per second, the CPU time the verifies took gives verifies per CPU-second:
    unlike the wall-clock rate, it holds when other processes share the machine, and so does
    the login scenario's logins per authshim CPU-second that it is compared with.
    """
    hasher = params.hasher()
    hash_times = []
    for _ in range(5):
        started = time.perf_counter()
        hasher.hash(PASSWORD)
        hash_times.append(time.perf_counter() - started)
    hash_ms = sorted(hash_times)[len(hash_times) // 2] * 1000

    with Sampler() as s1:
        started, cpu = time.perf_counter(), time.process_time()
        n = _verify_for(params, phc, seconds)
        one, one_cpu = n / (time.perf_counter() - started), n / (time.process_time() - cpu)
    cores = len(os.sched_getaffinity(0))
    with Sampler() as s2:
        every, every_cpu = all_cores(params, phc, seconds)
    label = f"t={params.time_cost} m={params.memory_cost} KiB p={params.parallelism}"
    rows = [
        Row("1 argon2id", "verify, 1 thread", one, "verifies/s", 1000 / one, cores="1",
            ratio=f"{one_cpu:.1f} per CPU-second", note=label + _other(s1),
            raw={"hash_ms": hash_ms, "per_cpu_s": one_cpu}),
        Row("1 argon2id", f"verify, {cores} threads", every, "verifies/s",
            ratio=f"{every / one:.2f}x 1 thread; {every_cpu:.1f} per CPU-second",
            cores=f"{cores} (all)", note="the limit for local logins" + _other(s2),
            raw={"per_cpu_s": every_cpu}),
    ]  # fmt: skip
    figures = {"hash_ms": hash_ms, "verify_1": one, "verify_all": every, "per_cpu_s": every_cpu}
    return rows, figures


def all_cores(params: Argon2, phc: str, seconds: float) -> tuple[float, float]:
    """Verifies per second on every core at once, and per CPU-second: the limit for logins."""
    cores = len(os.sched_getaffinity(0))
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(cores) as pool:
        n = sum(pool.map(lambda _: _verify_for(params, phc, seconds), range(cores)))
    return n / (time.perf_counter() - started), n / (time.process_time() - cpu)


def _other(s: Sampler) -> str:
    return f"; other load {s.foreign:.1f} cores" if s.foreign > 0.1 else ""
