"""build_info, per-target up/last-success gauges and the heartbeat gauge, which the alerts in
deploy/prometheus/ read: their values, and their absence where an alert must not fire."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, generate_latest

import watcher
from watcher.runtime.metrics import Metrics

UP = "cce_watcher_target_up"
LAST = "cce_watcher_target_last_success_timestamp_seconds"
HEARTBEAT = "cce_watcher_heartbeat_last_success_timestamp_seconds"


class WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_build_info_names_the_version_and_python() -> None:
    reg = CollectorRegistry()
    Metrics(reg)
    labels = {"version": watcher.__version__, "python": platform.python_version()}
    assert reg.get_sample_value("cce_watcher_build_info", labels) == 1


def test_a_target_is_up_after_a_good_poll_and_down_after_a_failed_one() -> None:
    reg, wall = CollectorRegistry(), WallClock()
    m = Metrics(reg, wall_clock=wall)
    m.poll_finished("prod", "ok", 0.2)
    assert reg.get_sample_value(UP, {"target": "prod"}) == 1
    assert reg.get_sample_value(LAST, {"target": "prod"}) == wall.now
    success_at = wall.now
    wall.now += 600
    m.poll_finished("prod", "transport", 5.0)
    assert reg.get_sample_value(UP, {"target": "prod"}) == 0
    assert reg.get_sample_value(LAST, {"target": "prod"}) == success_at  # unchanged
    m.poll_finished("prod", "gone", 0.1)  # a clean 404: the API answered
    assert reg.get_sample_value(UP, {"target": "prod"}) == 1
    assert reg.get_sample_value(LAST, {"target": "prod"}) == wall.now


def test_a_target_that_never_succeeded_has_no_last_success() -> None:
    """Absent, not 0: `time() - 0` would read as "no success since 1970" on the first poll."""
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.poll_finished("new", "auth", 0.1)
    assert reg.get_sample_value(UP, {"target": "new"}) == 0
    assert reg.get_sample_value(LAST, {"target": "new"}) is None


def test_the_auth_series_starts_at_zero_so_the_first_refusal_is_an_increase() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.poll_finished("prod", "ok", 0.1)
    polls = "cce_watcher_polls_total"
    assert reg.get_sample_value(polls, {"target": "prod", "result": "auth"}) == 0
    m.poll_finished("prod", "auth", 0.1)
    assert reg.get_sample_value(polls, {"target": "prod", "result": "auth"}) == 1


def test_forget_target_drops_that_targets_series_only() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.poll_finished("gone", "ok", 0.1)
    m.poll_finished("kept", "ok", 0.1)
    m.forget_target("gone")
    m.forget_target("never-polled")  # nothing to drop is fine
    assert reg.get_sample_value(UP, {"target": "gone"}) is None
    assert reg.get_sample_value(LAST, {"target": "gone"}) is None
    polls = "cce_watcher_polls_total"
    assert reg.get_sample_value(polls, {"target": "gone", "result": "ok"}) is None
    assert reg.get_sample_value(UP, {"target": "kept"}) == 1
    assert reg.get_sample_value(polls, {"target": "kept", "result": "ok"}) == 1


def test_heartbeat_gauge_is_declared_but_has_no_sample_until_a_ping_succeeds() -> None:
    reg, wall = CollectorRegistry(), WallClock()
    m = Metrics(reg, wall_clock=wall)
    text = generate_latest(reg).decode()
    assert f"# TYPE {HEARTBEAT} gauge" in text
    assert reg.get_sample_value(HEARTBEAT) is None
    m.heartbeat_sent(False)
    assert reg.get_sample_value(HEARTBEAT) is None
    assert reg.get_sample_value("cce_watcher_heartbeats_total", {"result": "failed"}) == 1
    m.heartbeat_sent(True)
    assert reg.get_sample_value(HEARTBEAT) == wall.now
    assert reg.get_sample_value("cce_watcher_heartbeats_total", {"result": "ok"}) == 1
