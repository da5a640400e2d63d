"""Bounded metrics at scale (issue 12.3): series only for live workflows, a cap with a count
of what was left out (for workflows and for targets), a small /metrics at 10,000 workflows
or 10,000 targets, and a scrape rendered off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.http.conftest import ServerFactory
from watcher.runtime.metrics import OTHER_TARGETS, Metrics

DROPPED = "cce_watcher_workflow_series_dropped_total"
TARGETS_DROPPED = "cce_watcher_target_series_dropped_total"
UP = "cce_watcher_target_up"
LAST = "cce_watcher_target_last_success_timestamp_seconds"
POLLS = "cce_watcher_polls_total"
TASKS = {"PreCheck": "Success", "Cluster": "Running", "PostCheck": "Init"}


def target_labels(reg: CollectorRegistry) -> dict[str, int]:
    """Series per ``target`` label value, over every metric."""
    counts: dict[str, int] = {}
    for family in reg.collect():
        for s in family.samples:
            if "target" in s.labels:
                counts[s.labels["target"]] = counts.get(s.labels["target"], 0) + 1
    return counts


def workflow_series(reg: CollectorRegistry) -> set[tuple[str, str]]:
    return {
        (s.labels["target"], s.labels["workflow"])
        for family in reg.collect()
        for s in family.samples
        if s.name in {"cce_watcher_workflow_phase", "cce_watcher_task_status"}
    }


def test_a_workflow_that_ended_has_no_series_left() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_workflow("t", "wf", "Running", TASKS, 600.0, state="Running")
    assert workflow_series(reg) == {("t", "wf")}
    m.set_workflow("t", "wf", "Success", TASKS, None, state="Succeeded")
    assert workflow_series(reg) == set()
    text = generate_latest(reg).decode()
    assert 'workflow="wf"' not in text


def test_beyond_the_cap_workflows_are_counted_once_not_exported() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, max_workflows=3)
    for poll in range(3):  # every workflow is polled again: counted once each all the same
        for i in range(5):
            m.set_workflow("t", f"wf{i}", "Running", TASKS, None)
        assert len(workflow_series(reg)) == 3
        assert reg.get_sample_value(DROPPED) == 2, poll
    m.set_workflow("t", "wf0", "Success", TASKS, None)  # one ends: room for a left-out one
    m.set_workflow("t", "wf4", "Running", TASKS, None)
    assert ("t", "wf4") in workflow_series(reg)
    assert reg.get_sample_value(DROPPED) == 2


def test_metrics_at_10000_known_workflows_stay_under_a_megabyte() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    for t in range(1000):  # 1,000 clusters x 10 workflows; 200 of them live
        target = f"cluster-{t:04d}"
        m.poll_finished(target, "ok", 0.05)
        m.poll_finished(target, "transport", 1.0)
        m.api_response("cce.example", "cce.workflows.list", 200, None, 0.05)
        for w in range(10):
            live = w == 0 and t % 5 == 0
            m.set_workflow(
                target,
                f"{t:04d}0000-0000-0000-0000-{w:012d}",
                "Running" if live else "Success",
                TASKS,
                3600.0 if live else None,
                state="Running" if live else "Succeeded",
            )
    body = generate_latest(reg)
    assert len(workflow_series(reg)) == 200
    assert len(body) < 1_000_000, len(body)


def test_10000_targets_keep_series_for_the_cap_and_share_one_other_label() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    for t in range(10_000):  # 10,000 workflow targets, 1 % failing, each with a live workflow
        target = f"wf-{t:05d}-0000-4000-8000-{t:012d}"
        m.poll_finished(target, "ok" if t % 100 else "transport", 0.05)
        m.set_workflow(target, target, "Running", TASKS, 3600.0, state="Running")
    per_target = target_labels(reg)
    assert len(per_target) == 500 + 1  # the first 500 targets, and _other for the rest
    # polls ok and auth (and their _created), up, last success; phase, state, 3 tasks and
    # the pre-check of its workflow
    assert max(per_target.values()) <= 12
    assert reg.get_sample_value(TARGETS_DROPPED) == 9_500
    assert reg.get_sample_value(DROPPED) == 9_500
    assert reg.get_sample_value(POLLS, {"target": OTHER_TARGETS, "result": "ok"}) == 9_405
    assert reg.get_sample_value(UP, {"target": OTHER_TARGETS}) == 0  # 95 of them failing
    assert len(generate_latest(reg)) < 1_000_000


def test_targets_beyond_the_cap_still_fire_every_target_alert_as_other() -> None:
    """Up, auth and last success of the folded targets, as the alerts in deploy/ read them."""
    reg = CollectorRegistry()
    clock = iter(float(t) for t in range(1_000, 2_000))
    m = Metrics(reg, max_targets=1, wall_clock=lambda: next(clock))
    m.poll_finished("own", "ok", 0.1)
    m.poll_finished("b", "ok", 0.1)  # last success 1001
    m.poll_finished("c", "ok", 0.1)  # 1002
    other = {"target": OTHER_TARGETS}
    assert reg.get_sample_value(UP, other) == 1
    assert reg.get_sample_value(LAST, other) == 1001  # the oldest: b's
    assert reg.get_sample_value(POLLS, {**other, "result": "auth"}) == 0  # increase() sees 1
    m.poll_finished("c", "auth", 0.1)
    assert reg.get_sample_value(UP, other) == 0
    assert reg.get_sample_value(POLLS, {**other, "result": "auth"}) == 1
    m.poll_finished("b", "ok", 0.1)  # 1003: now c's 1002 is the oldest
    assert reg.get_sample_value(LAST, other) == 1002
    assert reg.get_sample_value(UP, {"target": "b"}) is None
    assert reg.get_sample_value(TARGETS_DROPPED) == 2
    m.forget_target("c")  # the failing one goes: the rest are up
    assert reg.get_sample_value(UP, other) == 1
    assert reg.get_sample_value(LAST, other) == 1003
    m.forget_target("b")  # none left beyond the cap: nothing to alert on
    assert reg.get_sample_value(UP, other) is None
    assert reg.get_sample_value(LAST, other) is None


def test_a_forgotten_target_frees_its_slot_and_drops_its_polls() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, max_targets=1)
    m.poll_finished("first", "ok", 0.1)
    m.poll_finished("second", "ok", 0.1)
    assert "second" not in target_labels(reg)
    m.forget_target("first")
    assert "first" not in target_labels(reg)  # no polls_total left behind either
    m.poll_finished("second", "ok", 0.1)  # gets the free slot on its next poll
    assert reg.get_sample_value(UP, {"target": "second"}) == 1
    assert reg.get_sample_value(POLLS, {"target": "second", "result": "ok"}) == 1
    assert reg.get_sample_value(UP, {"target": OTHER_TARGETS}) is None
    assert reg.get_sample_value(TARGETS_DROPPED) == 1


class _Slow(Collector):
    """A collector that takes a while and notes the thread it ran on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[int] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds)  # the CPU of a big render, without the flakiness of real CPU
        yield GaugeMetricFamily("bench_slow", "A slow collector.", value=1)


async def test_a_scrape_is_rendered_off_the_event_loop(
    make_server: ServerFactory, client: aiohttp.ClientSession, registry: CollectorRegistry
) -> None:
    slow = _Slow(0.4)
    registry.register(slow)
    server = await make_server()
    loop_thread = threading.get_ident()
    stalls: list[float] = []

    async def probe() -> None:  # the loop-lag monitor: how late does a 10 ms sleep wake?
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            stalls.append(time.monotonic() - t0 - 0.01)

    monitor = asyncio.create_task(probe())
    try:
        async with client.get(server.url + "/metrics") as resp:
            assert resp.status == 200
            assert b"bench_slow 1.0" in await resp.read()
    finally:
        monitor.cancel()
    assert slow.threads and loop_thread not in slow.threads
    # On the loop, the render would stall it for the collector's whole 0.4 s.
    assert max(stalls) < 0.2, max(stalls)
