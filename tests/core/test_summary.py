"""The shared workflow summary: durations, expiry countdown, check verdict and text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watcher.core.events import TargetRef
from watcher.core.models import Workflow
from watcher.core.summary import format_text, human_duration, needs_attention, summarize

TARGET = TargetRef(name="prod", region="ap-southeast-1", project_id="p", cluster_id="c")
NOW = datetime(2023, 11, 25, 8, 0, tzinfo=UTC)


def test_seed_summary(seed_workflow_raw: dict[str, Any]) -> None:
    summary = summarize(Workflow.from_api(seed_workflow_raw), target=TARGET, now=NOW)
    points = {p["task_type"]: p for p in summary["points"]}
    assert round(points["PreCheck"]["duration_s"]) == 61
    assert round(points["Cluster"]["duration_s"]) == 545
    assert points["Snapshot"]["status"] is None
    assert summary["precheck_expires_in_s"] is None  # the upgrade already started
    assert needs_attention(summary)
    text = format_text(summary)
    assert "phase Pending" in text
    assert "PreCheck   Success     (1m 1s)" in text
    assert "Cluster    Failed      (9m 5s)" in text
    assert "Snapshot   not run" in text


def _waiting(expires: datetime) -> Workflow:
    return Workflow.from_api(
        {
            "metadata": {"uid": "w"},
            "status": {
                "phase": "Running",
                "pointStatuses": [
                    {
                        "taskType": "PreCheck",
                        "status": "Success",
                        "expireTimeStamp": expires.isoformat(),
                    },
                    {"taskType": "Cluster", "status": "Init"},
                ],
            },
        }
    )


def test_countdown_and_expired_verdict() -> None:
    ahead = summarize(_waiting(NOW + timedelta(minutes=15)), target=TARGET, now=NOW)
    assert ahead["precheck_expires_in_s"] == 900
    assert not needs_attention(ahead)
    assert "expires in 15m" in format_text(ahead)
    past = summarize(_waiting(NOW - timedelta(minutes=2)), target=TARGET, now=NOW)
    assert needs_attention(past)
    assert "EXPIRED 2m ago" in format_text(past)


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (5, "5s"), (61, "1m 1s"), (7380, "2h 3m"), (-120, "-2m")]
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_people_read_failed_for_pending_and_the_raw_phase_stays(
    seed_workflow_raw: dict[str, Any],
) -> None:
    summary = summarize(
        Workflow.from_api(seed_workflow_raw),
        target=TARGET,
        now=NOW,
        console_url="https://console.example/c",
    )
    assert (summary["state"], summary["phase"]) == ("Failed", "Pending")
    text = format_text(summary)
    assert "Failed (phase Pending)" in text
    assert "console: https://console.example/c" in text


def test_a_rolled_back_workflow_needs_no_attention_and_a_paused_one_says_so() -> None:
    from tests.core.strategies import pt, wf

    rolled = wf(
        "Pending",
        pt("Cluster", "Failed", "cl", start=1, end=2),
        pt("Rollback", "Success", "rb", start=3, end=4),
    )
    summary = summarize(rolled, target=TARGET, now=NOW)
    assert summary["state"] == "Rolled back" and not needs_attention(summary)
    failed_rollback = wf(
        "Pending",
        pt("Cluster", "Failed", "cl", start=1, end=2),
        pt("Rollback", "Failed", "rb", start=3, end=4),
    )
    assert needs_attention(summarize(failed_rollback, target=TARGET, now=NOW))
    running = wf("Running", pt("Cluster", "Running", "cl", start=1))
    paused = summarize(running, target=TARGET, now=NOW, progress="45.00", paused=True)
    assert (paused["progress_percent"], paused["paused"]) == ("45%", True)
    assert "Running (phase Running)  PAUSED  progress 45%" in format_text(paused)
