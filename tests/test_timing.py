"""Timing: unknown, unmigrated and migrated users are not told apart by login latency.

Samples are interleaved (so drift in machine load hits every group alike) and compared by
median, with a generous bound: the defence under test is "the same argon2 work", whose absence
shows as a difference of a whole hash (here ~10 ms and more), far above the noise allowed.
"""

from __future__ import annotations

import statistics
import time

from proxy.modes import write_mode
from tests.fixtures.proxy import Proxy, StartProxy

SAMPLES = 40
# Dearer than the suite's usual argon2, so that a missing hash would stand out of the noise.
ARGON = {"time_cost": 1, "memory_cost": 8192, "workers": 2}


async def timed(proxy: Proxy, email: str, password: str) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": email, "password": password}
    ) as response:
        body = await response.read()
    return time.perf_counter() - started, response.status, body


async def medians(proxy: Proxy, who: dict[str, str]) -> dict[str, float]:
    """Interleaved samples of a wrong password for each user; every answer must be the same."""
    samples: dict[str, list[float]] = {name: [] for name in who}
    answers = set()
    for _ in range(SAMPLES):
        for name, email in who.items():
            seconds, status, body = await timed(proxy, email, "wrong-password")
            samples[name].append(seconds)
            answers.add((status, body))
    assert len(answers) == 1, answers  # the same status and body for everyone
    return {name: statistics.median(values) for name, values in samples.items()}


def assert_close(found: dict[str, float]) -> None:
    fastest, slowest = min(found.values()), max(found.values())
    assert slowest - fastest < max(0.5 * fastest, 0.004), found


async def test_cutover_login_latency_does_not_tell_users_apart(start_proxy: StartProxy) -> None:
    """In cut-over, a migrated user, a legacy-only user and an unknown one take as long."""
    proxy = await start_proxy(
        lambda raw: raw.update(
            passwords=ARGON, limits={"login_account_ip": 10_000, "login_ip": 10_000}
        )
    )
    async with proxy.client.post(
        proxy.url("/api/login"), json={"email": "bob@example.com", "password": "builder-22"}
    ) as response:
        assert response.status == 200  # bob is migrated now
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    found = await medians(
        proxy,
        {
            "migrated": "bob@example.com",
            "unmigrated": "alice@example.com",
            "unknown": "nobody@example.com",
        },
    )
    assert found["migrated"] > 0.002  # argon2 really ran, or this test shows nothing
    assert_close(found)


async def test_migrate_login_latency_does_not_tell_unknown_from_unmigrated(
    start_proxy: StartProxy,
) -> None:
    """In migrate mode, unknown and legacy-only users both go to the legacy app: same latency
    and the same refusal."""
    proxy = await start_proxy(
        lambda raw: raw.update(
            passwords=ARGON, limits={"login_account_ip": 10_000, "login_ip": 10_000}
        )
    )
    found = await medians(proxy, {"unmigrated": "alice@example.com", "unknown": "x@example.com"})
    assert_close(found)
