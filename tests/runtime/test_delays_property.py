"""Issue 7 item 3: no computed delay exceeds its cap or raises, whatever the inputs.

Covers every delay the daemon computes: poll cadence, failure backoff, Retry-After (header
text through the parser to the failure delay), the watch's cap and the scheduler's clamp.
"""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.strategies import T0, TARGET, workflows
from watcher.cloud.responses import parse_retry_after
from watcher.core import cadence, engine
from watcher.core.policy import Policy, PollPolicy
from watcher.runtime.scheduler import PollScheduler

any_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e300, -1e300, 0.0, -0.0, 5e-324]
)
positive = st.floats(min_value=1e-3, max_value=1e300, allow_nan=False, allow_infinity=False)
retry_after_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["1e300", "-1", "nan", "inf", "-inf", "Fri, 31 Dec 9999 23:59:59 GMT"]),
    any_float.map(repr),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
)


@given(delay=any_float | st.none(), cap=positive, floor=st.floats(0, 1e6))
def test_bounded_never_exceeds_the_cap(delay: float | None, cap: float, floor: float) -> None:
    value = cadence.bounded(delay, cap, floor)
    assert 0.0 <= value <= min(cap, cadence.LONGEST_S)
    timedelta(seconds=value)  # never an OverflowError downstream


@given(
    failures=st.integers(min_value=-5, max_value=10**6),
    base=positive,
    cap=positive,
    rand=any_float.filter(lambda r: not math.isnan(r)),
    header=retry_after_text,
)
def test_failure_delay_is_capped_for_any_retry_after(
    failures: int, base: float, cap: float, rand: float, header: str
) -> None:
    retry_after = parse_retry_after(header, T0)
    delay = cadence.failure_delay(failures, base, cap, rand, retry_after=retry_after)
    cap = min(cap, cadence.LONGEST_S)
    assert 0.0 <= delay <= cap
    assert delay >= min(1.0, cap)  # never a hot loop
    if retry_after is not None:
        assert delay >= min(retry_after, cap)


@settings(max_examples=200)
@given(
    workflow=workflows(),
    minutes=st.floats(-1e6, 1e6),
    active=positive,
    idle=positive,
    failed=positive,
)
def test_cadence_is_finite_and_never_raises(
    workflow: object, minutes: float, active: float, idle: float, failed: float
) -> None:
    poll = PollPolicy(active_s=active, idle_s=idle, failed_s=failed, min_s=min(active, 5.0))
    assert hasattr(workflow, "uid")
    state = engine.evaluate(None, workflow, T0, Policy(), target=TARGET).state  # type: ignore[arg-type]
    now = T0 + timedelta(minutes=minutes)
    delay = cadence.next_poll_in(state, now, poll, Policy())
    if delay is not None:
        assert poll.min_s <= delay <= max(active, idle, failed)


@given(delay=any_float | st.none(), cap=positive)
def test_scheduler_clamps_every_delay(delay: float | None, cap: float) -> None:
    sched = PollScheduler(max_delay_s=cap)
    value = sched.bound(delay)
    assert 0.0 <= value <= min(cap, cadence.LONGEST_S)
