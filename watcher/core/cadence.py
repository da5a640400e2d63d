"""When to poll next: the adaptive interval of SPEC.md section 5, and failure backoff.

Pure decisions over the engine's ``WatchState``; the scheduler turns them into jobs. Kept
apart from the engine because the engine says *what happened* and this says *how soon to
look again*; both read the same time rules through ``engine.next_deadline``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from watcher.core import engine
from watcher.core.models import ACTIVE_STATUSES, TERMINAL_PHASES, Phase
from watcher.core.policy import Policy, PollPolicy

LONGEST_S = 86400.0  # no wait is ever longer than a day, whatever the configuration says
_ACTIVE = frozenset(s.value for s in ACTIVE_STATUSES)
_TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)


def is_terminal(state: engine.WatchState) -> bool:
    """The workflow ended (Success or Cancel): nothing about it can change any more."""
    return state.workflow.phase in _TERMINAL


def is_active(state: engine.WatchState) -> bool:
    """A point is Queuing or Running and the workflow has not ended (poll at active_s)."""
    return not is_terminal(state) and any(p.status in _ACTIVE for p in state.workflow.points)


def next_poll_in(
    state: engine.WatchState | None, now: datetime, poll: PollPolicy, policy: Policy
) -> float | None:
    """Seconds until the next poll of a workflow, or None to stop polling it.

    - None: the state is terminal (phase Success or Cancel). The poll that produced this
      state was the last regular one; the caller drops the job. If it wants SPEC.md's
      "one last poll" it schedules exactly one more after ``poll.idle_s`` and then stops
      whatever it returns (a terminal phase never changes; ``evaluate`` would still report a
      change if the cloud did). None is only ever returned for a terminal state.
    - active (any point Queuing/Running): ``active_s``;
    - failed (phase Pending): ``failed_s``;
    - idle (everything else: Init, pre-check done and upgrade not started, unknown phase,
      vanished): ``idle_s``;
    and never later than the next time-rule deadline (pre-check lead or expiry, stall
    threshold or repeat, reminder), floored at ``min_s``. ``state=None`` (nothing seen yet)
    polls at ``idle_s``.
    """
    if state is None:
        return max(poll.min_s, poll.idle_s)
    if is_terminal(state):
        return None
    return interval_until(state, now, poll, engine.next_deadline(state, now, policy))


def interval_until(
    state: engine.WatchState, now: datetime, poll: PollPolicy, deadline: datetime | None
) -> float | None:
    """``next_poll_in`` with the next time-rule deadline already known (a hot-path saving:
    the watcher computes the deadline once per change, not once per poll)."""
    if is_terminal(state):
        return None
    if is_active(state):
        base = poll.active_s
    elif state.workflow.phase == Phase.PENDING:
        base = poll.failed_s
    else:
        base = poll.idle_s
    if deadline is not None:
        until = (deadline - _utc(now)).total_seconds()
        base = min(base, until)
    return max(poll.min_s, base)


def backoff_s(consecutive_failures: int, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with full jitter: ``rand * min(cap, base * 2**(failures-1))``.

    ``rand`` is a random number in [0, 1) supplied by the caller (values outside are
    clamped), so this stays pure. Zero failures gives 0.0. Full jitter can give a delay near
    zero; the caller applies its own floor if it needs one.
    """
    if consecutive_failures <= 0 or base <= 0 or cap <= 0:
        return 0.0
    exponent = min(consecutive_failures - 1, 60)  # 2**60 * any sane base exceeds any cap
    ceiling = min(cap, base * math.ldexp(1.0, exponent))
    jitter = min(max(rand, 0.0), 1.0)
    return jitter * ceiling


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


def failure_delay(
    consecutive_failures: int,
    base: float,
    cap: float,
    rand: float,
    *,
    retry_after: float | None = None,
    floor: float = 1.0,
) -> float:
    """Seconds until the next try after a failed poll: jittered backoff, at least the
    server's Retry-After, never below ``floor`` (no hot loop) and never above ``cap``."""
    delay = backoff_s(consecutive_failures, base, cap, rand)
    if retry_after is not None and not math.isnan(retry_after):
        delay = max(delay, retry_after)
    return bounded(delay, cap, floor)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
