"""Metrics: names on an injected registry, and bounded label sets for open strings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from watcher.core.outcome import PollOutcome
from watcher.runtime.metrics import Metrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def series(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    return [s.labels for metric in registry.collect() for s in metric.samples if s.name == name]


def test_counters_and_histograms() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.poll_finished("t1", "ok", 0.3)
    m.poll_finished("t1", PollOutcome.TRANSPORT, 1.0)
    m.api_response("cce.example", "show_workflow", 200, None, 0.05)
    m.api_response("cce.example", "show_workflow", 429, "CCE.01429", 0.01)
    m.api_response("cce.example", "show_workflow", None, None, 5.0)
    m.event_emitted("task.failed", "failure")
    m.delivery_finished("slack", "sent")
    m.delivery_finished("slack", "dead")
    m.set_outbox(3, 12.5, 1)
    m.set_scheduler_up(True)
    assert value(reg, "cce_watcher_polls_total", target="t1", result="ok") == 1
    assert value(reg, "cce_watcher_poll_duration_seconds_count") == 2  # no per-target label
    assert value(reg, "cce_watcher_api_request_seconds_count", route="show_workflow") == 3
    assert value(reg, "cce_watcher_api_errors_total", status="429", code="CCE.01429") == 1
    assert value(reg, "cce_watcher_api_errors_total", status="none", code="") == 1
    assert value(reg, "cce_watcher_api_errors_total", status="200", code="") is None
    assert value(reg, "cce_watcher_events_total", kind="task.failed", severity="failure") == 1
    assert value(reg, "cce_watcher_deliveries_total", url="slack", result="dead") == 1
    assert value(reg, "cce_watcher_outbox_pending") == 3
    assert value(reg, "cce_watcher_outbox_oldest_pending_age_seconds") == 12.5
    assert value(reg, "cce_watcher_dead_letters") == 1
    assert value(reg, "cce_watcher_scheduler_up") == 1


def test_maybe_delivered_attempts_have_their_own_counter() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.delivery_maybe_delivered("slack")
    m.delivery_maybe_delivered("slack")
    assert value(reg, "cce_watcher_deliveries_maybe_delivered_total", url="slack") == 2
    assert b"cce_watcher_deliveries_maybe_delivered_total" in generate_latest(reg)


def test_two_instances_do_not_share_a_registry() -> None:
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())  # would raise "Duplicated timeseries" on a shared registry


def test_phase_and_task_changes_replace_their_series() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_workflow("t1", "wf", "Init", {"PreCheck": "Running", "Cluster": None}, None)
    m.set_workflow("t1", "wf", "Running", {"PreCheck": "Success", "Cluster": "Init"}, 900.0)
    assert series(reg, "cce_watcher_workflow_phase") == [
        {"target": "t1", "workflow": "wf", "phase": "Running"}
    ]
    statuses = {(s["task"], s["status"]) for s in series(reg, "cce_watcher_task_status")}
    assert statuses == {("PreCheck", "Success"), ("Cluster", "Init")}
    assert value(reg, "cce_watcher_precheck_expiry_seconds", target="t1", workflow="wf") == 900
    m.set_workflow("t1", "wf", "Running", {"PreCheck": "Success"}, None)
    statuses = {(s["task"], s["status"]) for s in series(reg, "cce_watcher_task_status")}
    assert statuses == {("PreCheck", "Success")}
    assert series(reg, "cce_watcher_precheck_expiry_seconds") == []


def test_forget_workflow_removes_every_series() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_workflow("t1", "wf", "Pending", {"Cluster": "Failed"}, -10.0)
    m.set_workflow("t1", "other", "Running", {"Cluster": "Running"}, None)
    m.forget_workflow("t1", "wf")
    m.forget_workflow("t1", "never-seen")
    text = generate_latest(reg).decode()
    assert 'workflow="wf"' not in text
    assert 'workflow="other"' in text


def test_the_human_state_has_one_series_per_workflow() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_workflow("t1", "wf", "Pending", {"Cluster": "Failed"}, None, state="Failed")
    m.set_workflow(
        "t1",
        "wf",
        "Pending",
        {"Cluster": "Failed", "Rollback": "Success"},
        None,
        state="Rolled back",
    )
    assert series(reg, "cce_watcher_workflow_state") == [
        {"target": "t1", "workflow": "wf", "state": "Rolled back"}
    ]
    assert series(reg, "cce_watcher_workflow_phase") == [
        {"target": "t1", "workflow": "wf", "phase": "Pending"}  # the raw phase stays
    ]
    m.forget_workflow("t1", "wf")
    assert series(reg, "cce_watcher_workflow_state") == []
