"""Failed logins answered at one pace: who has migrated, and who exists, does not show in time."""

from __future__ import annotations

import statistics

from proxy.pacing import CAP, FailurePace, Hold
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import StartProxy
from tests.test_timing import timed

NO_LIMITS = {"login_account_ip": 10_000, "login_ip": 10_000}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_the_learned_floor_is_a_high_quantile_of_recent_failures() -> None:
    """Nine fast failures and one slow: the floor is the slow one's time once it is the 90th
    percentile, and a stalled legacy app teaches it no more than the cap."""
    clock = Clock()
    pace = FailurePace(None, clock=clock)
    assert pace.floor() == 0.0
    for elapsed in [0.01] * 9 + [0.3]:
        clock.now = 100.0 + elapsed
        await pace.hold(100.0)
    assert abs(pace.floor() - 0.3) < 1e-6
    for _ in range(64):
        clock.now = 100.0 + 60.0
        await pace.hold(100.0)
    assert pace.floor() == CAP


async def test_a_fixed_floor_and_a_hold_that_waits_once() -> None:
    """``failure_floor = "20ms"`` holds a fast failure until 20 ms; a second call is free."""
    import time

    pace = FailurePace(0.02)
    started = time.perf_counter()
    hold = Hold(pace, started)
    await hold()
    assert time.perf_counter() - started >= 0.02
    again = time.perf_counter()
    await hold()
    assert time.perf_counter() - again < 0.02


async def test_migrate_mode_failures_of_every_kind_take_one_time(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """With a legacy app that takes 60 ms to refuse, a migrated user's wrong password (judged by
    argon2 in a few ms) is answered when an unmigrated or unknown user's is."""
    legacy.login_delay = 0.06
    proxy = await start_proxy(lambda raw: raw.update(limits=NO_LIMITS))
    assert (await timed(proxy, "bob@example.com", "builder-22"))[1] == 200  # bob migrates
    samples: dict[str, list[float]] = {"migrated": [], "unmigrated": [], "unknown": []}
    who = {"migrated": "bob@example.com", "unmigrated": "carol@example.com",
           "unknown": "nobody@example.com"}  # fmt: skip
    for _ in range(25):
        for name, email in who.items():
            seconds, status, _ = await timed(proxy, email, "wrong-password")
            assert status == 401
            samples[name].append(seconds)
    found = {name: statistics.median(values) for name, values in samples.items()}
    assert found["migrated"] > 0.05, found  # held to the legacy app's pace
    assert max(found.values()) - min(found.values()) < 0.03, found
