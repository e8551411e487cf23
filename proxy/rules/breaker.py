"""A circuit breaker per rule: after ``failures`` failures in a row it opens for ``interval``
seconds (calls fail at once), then lets one call through; its success closes it again."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    """Closed, open until a time, or half-open with one trial call in flight."""

    def __init__(
        self, failures: int, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._interval = interval
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._trial = False

    @property
    def is_open(self) -> bool:
        return self._failures >= self._threshold

    def allow(self) -> bool:
        """Whether a call may go ahead now (a trial call when the interval has passed)."""
        if not self.is_open:
            return True
        if self._trial or self._clock() < self._open_until:
            return False
        self._trial = True
        return True

    def succeeded(self) -> None:
        self._failures = 0
        self._trial = False

    def failed(self) -> None:
        self._failures += 1
        self._trial = False
        if self.is_open:
            self._open_until = self._clock() + self._interval

    def abandoned(self) -> None:
        """A call that ended with neither (cancelled): a trial may be made again."""
        self._trial = False
