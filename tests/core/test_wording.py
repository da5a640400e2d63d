"""One duration formatter, counted nouns, percentages and the human state (issue 9)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.core.strategies import pt, wf
from watcher.core.models import Workflow
from watcher.core.wording import format_duration, human_state, percent, plural


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (0, "0s"),
        (-5, "0s"),
        (45, "45s"),
        (60, "1m"),
        (545, "9m 5s"),
        (3600, "1h"),
        (7500, "2h 5m"),
        (86400, "1d"),
        (273600, "3d 4h"),
        (timedelta(minutes=2), "2m"),
        (float("nan"), ""),
    ],
)
def test_format_duration(value: float | timedelta | None, text: str) -> None:
    assert format_duration(value) == text


def test_plural_never_says_1_attempts() -> None:
    assert plural(1, "attempt") == "1 attempt"
    assert plural(0, "attempt") == "0 attempts"
    assert plural(2, "check") == "2 checks"


@pytest.mark.parametrize(
    ("raw", "text"),
    [("0.00", "0%"), ("45.00", "45%"), ("12.50", "12.5%"), ("100", "100%"), ("x", None),
     (None, None), ("150", "100%")],
)
def test_percent(raw: str | None, text: str | None) -> None:
    assert percent(raw) == text


FAILED_CL = pt("Cluster", "Failed", "cl", start=1, end=2)

STATES: list[tuple[Workflow, str]] = [
    (wf("Init", pt("PreCheck", "Init")), "Not started"),
    (wf("Running", pt("PreCheck", "Running", "p", start=0)), "Running"),
    (wf("Pending", FAILED_CL), "Failed"),  # CCE's Pending reads "Failed" for people
    (wf("Running", FAILED_CL, pt("Rollback", "Running", "rb", start=3)), "Rolling back"),
    (wf("Running", FAILED_CL, pt("Rollback", "Queuing", "rb")), "Rolling back"),
    (wf("Pending", FAILED_CL, pt("Rollback", "Success", "rb", start=3, end=4)), "Rolled back"),
    (wf("Success", FAILED_CL, pt("Rollback", "Success", "rb", start=3, end=4)), "Rolled back"),
    (wf("Pending", FAILED_CL, pt("Rollback", "Failed", "rb", start=3, end=4)), "Failed"),
    (wf("Success", pt("Cluster", "Success", "cl", start=1, end=2)), "Succeeded"),
    (wf("Cancel", FAILED_CL), "Cancelled"),
    (wf("Frozen"), "Frozen"),  # an unknown phase is shown as the cloud spells it
]


@pytest.mark.parametrize(("workflow", "state"), STATES)
def test_human_state(workflow: Workflow, state: str) -> None:
    assert human_state(workflow) == state
