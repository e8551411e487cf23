"""Failed logins answered at one pace, so that time does not tell who exists.

A migrated user's wrong password is judged by argon2 in milliseconds; an unmigrated user's, or an
unknown user's, by the legacy app in however long it takes. Left alone, an attacker times the
answer and learns who has migrated (and, through the legacy app's own timing, who exists). Each
login route holds its failure answers until a floor: a fixed one, or (``auto``) a high quantile
of the route's own recent failures, so that most failures of every kind end at the same moment.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

WINDOW = 64  # recent failures the learned floor is read from
QUANTILE = 0.9  # most failures of every path end at the floor; only the slowest tenth show
CAP = 5.0  # seconds: a stalled legacy app must not teach the floor to hold answers longer


class FailurePace:
    """Holds a route's failure answers until its floor (``floor=None``: learned)."""

    def __init__(
        self, floor: float | None, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._fixed = floor
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=WINDOW)

    def floor(self) -> float:
        """The time a failure answer is held until, in seconds from the request's start."""
        if self._fixed is not None:
            return self._fixed
        if not self._recent:
            return 0.0
        ordered = sorted(self._recent)
        return ordered[min(len(ordered) - 1, int(QUANTILE * len(ordered)))]

    async def hold(self, started: float) -> None:
        """Wait until the floor, counted from ``started`` (a ``time.perf_counter()``), and
        learn from this failure's own time."""
        elapsed = self._clock() - started
        floor = self.floor()
        self._recent.append(min(elapsed, CAP))
        if (wait := floor - elapsed) > 0:
            await asyncio.sleep(wait)


class Hold:
    """One failed request's wait for its route's floor; only the first call waits."""

    __slots__ = ("_done", "_pace", "_started")

    def __init__(self, pace: FailurePace, started: float) -> None:
        self._pace, self._started, self._done = pace, started, False

    async def __call__(self) -> None:
        if not self._done:
            self._done = True
            await self._pace.hold(self._started)
