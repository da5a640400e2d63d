"""The one exponential backoff with full jitter, and the one clamp for every delay.

Used by the cloud client (retries inside one call), the poll cadence (failed polls and the
scheduler's crash restarts) and the delivery dispatcher (failed sends), which each had their
own copy (issue 8). Pure: the caller passes the random number in [0, 1), so tests are exact.
"""

from __future__ import annotations

import math

__all__ = ["LONGEST_S", "bounded", "full_jitter"]

LONGEST_S = 86400.0  # no wait is ever longer than a day, whatever the configuration says
_MAX_EXPONENT = 62  # 2**62 * any sane base already exceeds any cap; avoids float overflow


def full_jitter(failures: int, *, base: float, cap: float, rand: float) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1 = the first).

    ``rand * min(cap, base * 2**(failures-1))`` (AWS's "full jitter", which spreads
    synchronised pollers apart); ``rand`` outside [0, 1] is clamped. Zero failures, or a
    non-positive base or cap, gives 0.0. Full jitter can give a delay near zero: callers
    that need a floor apply it with ``bounded``.
    """
    if failures <= 0 or base <= 0 or cap <= 0:
        return 0.0
    # A product, not ldexp(base, n): a huge base gives inf (then the cap), never OverflowError.
    ceiling = min(cap, base * math.ldexp(1.0, min(failures - 1, _MAX_EXPONENT)))
    return min(max(rand, 0.0), 1.0) * ceiling


def bounded(delay: float | None, cap: float, floor: float = 0.0) -> float:
    """``delay`` clamped into ``[floor, cap]``: the last word on every wait the daemon makes.

    Never raises and never exceeds ``cap`` (itself bounded by ``LONGEST_S``, so a
    ``timedelta`` of the result cannot overflow): NaN, None and +inf (a garbage Retry-After,
    a computation gone wrong) become ``cap``, -inf and negatives become ``floor``. A
    ``floor`` above ``cap`` yields ``cap``.
    """
    cap = LONGEST_S if math.isnan(cap) else min(max(cap, 0.0), LONGEST_S)
    if delay is None or math.isnan(delay):
        return cap
    return min(cap, max(floor, delay))
