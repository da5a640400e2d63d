"""Simulated time: scenario seconds that run at a speed factor, or only when told to.

The clock is an offset in scenario seconds from its anchor (the real UTC time when the
simulator started or was reset). With autoplay, real monotonic time moves it at ``speed``
scenario seconds per real second; ``advance`` moves it by hand in either mode, so tests
with autoplay off are fully deterministic.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """Scenario-time offset plus its mapping to wall-clock datetimes."""

    def __init__(self, *, speed: float = 1.0, autoplay: bool = True) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.autoplay = autoplay
        self.reset()

    def reset(self) -> None:
        self.anchor = datetime.now(UTC)
        self._manual = 0.0
        self._started = time.monotonic()

    def offset(self) -> float:
        """Scenario seconds since the anchor."""
        if self.autoplay:
            return self._manual + (time.monotonic() - self._started) * self.speed
        return self._manual

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the simulated clock never goes back")
        self._manual += seconds

    def advance_to(self, offset: float) -> None:
        """Move forward to ``offset`` if it lies ahead; never backwards."""
        ahead = offset - self.offset()
        if ahead > 0:
            self._manual += ahead

    def at(self, offset: float) -> datetime:
        """The datetime a scenario offset stands for."""
        return self.anchor + timedelta(seconds=offset)

    def now(self) -> datetime:
        return self.at(self.offset())
