"""The watchdog tells a wedged scheduler (restart it) from an overloaded one (do not).

At 100,000 workflow targets on one core (`bench_scale.py --only 100k`) due polls wait
minutes while others start all the time; /healthz said "scheduler wedged" after 148 s, so
systemd's watchdog or a liveness probe would restart a daemon that was working at its
capacity, forever. The scheduler here is a stand-in with the four readings the watchdog
takes: one core's overload is not a state a unit test can make on demand (the real ones
are covered by tests/faults/test_self_watch.py and the benchmark).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from watcher.core.ports import SystemClock
from watcher.runtime.metrics import Metrics
from watcher.runtime.scheduler import PollScheduler
from watcher.runtime.watchdog import Watchdog


@dataclass
class Readings:
    overdue: float = 0.0  # the most overdue due poll's wait (s)
    idle: float = 0.0  # since the last poll started (s)
    running: bool = True

    def overdue_s(self) -> float:
        return self.overdue

    def seconds_since_last_run(self) -> float:
        return self.idle

    def longest_run(self) -> tuple[str, float] | None:
        return None


def _watchdog(readings: Readings, monotonic: list[float] | None = None) -> Watchdog:
    dog = Watchdog(
        scheduler=cast(PollScheduler, readings),
        clock=SystemClock(),
        metrics=Metrics(CollectorRegistry()),
        on_alert=lambda _event: None,
        status=lambda: "ok",
        run_limit_s=300.0,
        monotonic=(lambda: monotonic[0]) if monotonic is not None else time.monotonic,
    )
    dog.overdue_limit_s = 120.0
    return dog


def test_due_polls_late_while_others_start_is_overload_logged_once_not_a_wedge() -> None:
    readings, now = Readings(overdue=148.0, idle=0.01), [1000.0]
    dog = _watchdog(readings, now)
    with capture_logs() as logs:
        assert dog.healthy() == (True, "ok")
        # The oldest due poll's wait swings with each batch started (as measured at 100k),
        # one check every 5 s: one episode, however it swings.
        for overdue in (148.0, 30.0, 144.0, 0.5, 90.0, 121.0):
            readings.overdue = overdue
            dog._overload(readings.overdue)
            now[0] += 5.0
        readings.overdue = 0.2
        for _ in range(24):  # caught up after 120 s without a late poll, not before
            assert dog.overloaded
            dog._overload(readings.overdue)
            now[0] += 5.0
        dog._overload(readings.overdue)
        assert not dog.overloaded
    events = [line["event"] for line in logs]
    assert events == ["scheduler.overloaded", "scheduler.caught_up"], logs
    assert logs[0]["overdue_s"] == 148 and "replicas" in logs[0]["hint"]


def test_due_polls_late_and_none_started_is_a_wedge() -> None:
    dog = _watchdog(Readings(overdue=148.0, idle=130.0))
    ok, reason = dog.healthy()
    assert not ok
    assert reason == (
        "scheduler wedged: a due poll has waited 148 s to start, and none has started for 130 s"
    )


def test_no_poll_for_long_with_none_due_is_a_quiet_schedule() -> None:
    # One target at a 10-minute interval: no start for minutes, and nothing due.
    assert _watchdog(Readings(overdue=0.0, idle=590.0)).healthy() == (True, "ok")
