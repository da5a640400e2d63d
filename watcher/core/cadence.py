"""When to poll next: the adaptive interval of SPEC.md section 5, and failure backoff.

Pure decisions over the engine's ``WatchState``; the scheduler turns them into jobs. Kept
apart from the engine because the engine says *what happened* and this says *how soon to
look again*; both read the same time rules through ``rules.next_deadline``.
"""

from __future__ import annotations

import math
from datetime import datetime

from watcher.core import rules
from watcher.core.backoff import LONGEST_S, bounded, full_jitter
from watcher.core.models import ACTIVE_STATUSES, TERMINAL_PHASES, Phase
from watcher.core.policy import Policy, PollPolicy
from watcher.core.state import WatchState
from watcher.core.timeutil import utc

__all__ = [
    "LONGEST_S",
    "bounded",
    "failure_delay",
    "interval_until",
    "is_active",
    "is_terminal",
    "next_poll_in",
]

_ACTIVE = frozenset(s.value for s in ACTIVE_STATUSES)
_TERMINAL = frozenset(p.value for p in TERMINAL_PHASES)


def is_terminal(state: WatchState) -> bool:
    """The workflow ended (Success or Cancel): nothing about it can change any more."""
    return state.workflow.phase in _TERMINAL


def is_active(state: WatchState) -> bool:
    """A point is Queuing or Running and the workflow has not ended (poll at active_s)."""
    return not is_terminal(state) and any(p.status in _ACTIVE for p in state.workflow.points)


def next_poll_in(
    state: WatchState | None, now: datetime, poll: PollPolicy, policy: Policy
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
    return interval_until(state, now, poll, rules.next_deadline(state, now, policy))


def interval_until(
    state: WatchState, now: datetime, poll: PollPolicy, deadline: datetime | None
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
        until = (deadline - utc(now)).total_seconds()
        base = min(base, until)
    return max(poll.min_s, base)


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
    delay = full_jitter(consecutive_failures, base=base, cap=cap, rand=rand)
    if retry_after is not None and not math.isnan(retry_after):
        delay = max(delay, retry_after)
    return bounded(delay, cap, floor)
