"""Poll cadence: active, failed, idle capped by the next deadline, terminal; and backoff."""

from __future__ import annotations

import pytest

from tests.core.strategies import TARGET, at, pt, wf
from watcher.core import cadence, engine
from watcher.core.backoff import full_jitter
from watcher.core.models import Workflow
from watcher.core.policy import Policy, PollPolicy
from watcher.core.state import WatchState

POLICY = Policy()
POLL = PollPolicy()
PRE_OK = pt("PreCheck", "Success", "pre-1", start=-5, end=0, expire=120)


def state_of(workflow: Workflow, minutes: float = 0) -> WatchState:
    return engine.evaluate(None, workflow, at(minutes), POLICY, target=TARGET).state


@pytest.mark.parametrize(
    ("workflow", "seen", "now", "expected"),
    [
        (wf("Running", PRE_OK, pt("Cluster", "Running", "c", start=0)), 0, 1, 15.0),
        (wf("Running", PRE_OK, pt("Cluster", "Queuing", "c")), 0, 1, 15.0),
        (wf("Pending", PRE_OK, pt("Cluster", "Failed", "c", start=0, end=1)), 2, 3, 60.0),
        (wf("Init", pt("PreCheck"), pt("Cluster")), 0, 1, 60.0),
        (wf("Paused", PRE_OK, pt("Cluster")), 200, 201, 60.0),  # expired: no deadline left
        # pre-check passed, upgrade not started: idle, but never later than the next lead
        (wf("Init", PRE_OK, pt("Cluster", "Init")), 0, 1, 60.0),
        (wf("Init", PRE_OK, pt("Cluster", "Init")), 0, 59.5, 30.0),
        (wf("Init", PRE_OK, pt("Cluster", "Init")), 0, 59.99, 5.0),  # floored at min_s
        (wf("Init", PRE_OK, pt("Cluster", "Init")), 61, 104.5, 30.0),  # 15 min lead at 105
        (wf("Init", PRE_OK, pt("Cluster", "Init")), 106, 119.75, 15.0),  # expiry at 120
        # a reminder 4 h after the failure caps the failed interval just before it
        (wf("Pending", pt("Cluster", "Failed", "c", start=0, end=0)), 1, 239.5, 30.0),
        (wf("Success", PRE_OK, pt("Cluster", "Success", "c", start=0, end=9)), 10, 11, None),
        (wf("Cancel", PRE_OK), 10, 11, None),
    ],
)
def test_next_poll_in(workflow: Workflow, seen: float, now: float, expected: float | None) -> None:
    state = state_of(workflow, seen)
    assert cadence.next_poll_in(state, at(now), POLL, POLICY) == expected


def test_stall_threshold_caps_an_active_interval_only_when_sooner() -> None:
    slow = PollPolicy(active_s=600)
    state = state_of(wf("Running", pt("Snapshot", "Running", "s", start=0)), 0)
    assert cadence.next_poll_in(state, at(29), slow, POLICY) == 60.0  # threshold 30 min


def test_nothing_seen_yet_polls_idle() -> None:
    assert cadence.next_poll_in(None, at(0), POLL, POLICY) == 60.0


def test_is_active_and_terminal() -> None:
    running = state_of(wf("Running", pt("Cluster", "Running", "c", start=0)))
    done = state_of(wf("Success", pt("Cluster", "Running", "c", start=0)))
    assert cadence.is_active(running) and not cadence.is_terminal(running)
    assert cadence.is_terminal(done) and not cadence.is_active(done)


@pytest.mark.parametrize(
    ("failures", "rand", "expected"),
    [
        (0, 0.5, 0.0),
        (1, 0.5, 7.5),
        (2, 0.5, 15.0),
        (3, 0.999, 59.94),
        (5, 0.5, 120.0),  # 15 * 2**4 = 240, under the cap
        (10, 0.5, 150.0),
        (10_000, 0.5, 150.0),  # no overflow
        (3, 0.0, 0.0),
        (3, 7.0, 60.0),  # rand clamped
    ],
)
def test_backoff_full_jitter(failures: int, rand: float, expected: float) -> None:
    assert full_jitter(failures, base=15.0, cap=300.0, rand=rand) == pytest.approx(expected)
