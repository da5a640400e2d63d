"""The one backoff (cloud retries, failed polls, failed sends) and the one delay clamp."""

from __future__ import annotations

import math

import pytest

from watcher.core.backoff import LONGEST_S, bounded, full_jitter


@pytest.mark.parametrize(
    ("failures", "base", "cap", "rand", "expected"),
    [
        (0, 5.0, 600.0, 1.0, 0.0),  # nothing failed yet: no wait
        (-3, 5.0, 600.0, 1.0, 0.0),
        (1, 5.0, 600.0, 1.0, 5.0),  # the first failure waits up to base
        (2, 5.0, 600.0, 1.0, 10.0),
        (8, 5.0, 600.0, 1.0, 600.0),  # 5 * 2**7 = 640, capped
        (10_000, 5.0, 600.0, 1.0, 600.0),  # no overflow for absurd counts
        (3, 5.0, 600.0, 0.5, 10.0),  # full jitter scales the ceiling
        (3, 5.0, 600.0, 0.0, 0.0),
        (3, 5.0, 600.0, 7.0, 20.0),  # rand clamped to [0, 1]
        (3, 5.0, 600.0, -1.0, 0.0),
        (3, 0.0, 600.0, 1.0, 0.0),  # a zero base or cap never waits
        (3, 5.0, 0.0, 1.0, 0.0),
        (1, 0.5, 8.0, 0.5, 0.25),  # the cloud client's defaults
        (63, 1e300, 600.0, 1.0, 600.0),  # a huge base overflows to the cap, never raises
    ],
)
def test_full_jitter(failures: int, base: float, cap: float, rand: float, expected: float) -> None:
    assert full_jitter(failures, base=base, cap=cap, rand=rand) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("delay", "cap", "floor", "expected"),
    [
        (30.0, 60.0, 0.0, 30.0),
        (90.0, 60.0, 0.0, 60.0),
        (-5.0, 60.0, 1.0, 1.0),
        (None, 60.0, 0.0, 60.0),  # no answer: wait the longest allowed
        (math.nan, 60.0, 0.0, 60.0),
        (math.inf, 60.0, 0.0, 60.0),
        (-math.inf, 60.0, 2.0, 2.0),
        (5.0, 60.0, 90.0, 60.0),  # a floor above the cap yields the cap
        (1e300, math.inf, 0.0, LONGEST_S),  # never longer than a day
        (10.0, math.nan, 0.0, 10.0),
        (1e9, math.nan, 0.0, LONGEST_S),
    ],
)
def test_bounded(delay: float | None, cap: float, floor: float, expected: float) -> None:
    assert bounded(delay, cap, floor) == expected


def test_every_user_gets_the_same_numbers() -> None:
    """The three former copies now answer from the one function."""
    from watcher.cloud.client import RetryPolicy
    from watcher.core import cadence

    policy = RetryPolicy(base=0.5, cap=8.0)
    assert policy.delay(3, 0.5) == full_jitter(3, base=0.5, cap=8.0, rand=0.5)
    assert RetryPolicy(base=0.5, cap=8.0, jitter="none").delay(3, 0.1) == 2.0
    assert cadence.failure_delay(3, 15.0, 300.0, 0.5, floor=0.0) == full_jitter(
        3, base=15.0, cap=300.0, rand=0.5
    )
    assert cadence.bounded is bounded
