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
    [
        ("0.00", "0%"),
        ("45.00", "45%"),
        ("12.50", "12.5%"),
        ("100", "100%"),
        ("x", None),
        (None, None),
        ("150", "100%"),
    ],
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


PRE_OK = pt("PreCheck", "Success", "pre", start=-30, end=-20, expire=120)
ROLLED_BACK = pt("Rollback", "Success", "rb", start=-15, end=-10)


@pytest.mark.parametrize(
    ("workflow", "state"),
    [
        # A retry after a successful rollback: the upgrade runs again, it is not "Rolled back".
        (wf("Running", PRE_OK, ROLLED_BACK, pt("Cluster", "Running", "cl2", start=-5)), "Running"),
        (wf("Running", PRE_OK, pt("Cluster", "Running", "cl2", start=-5), ROLLED_BACK), "Running"),
        (
            wf("Pending", PRE_OK, ROLLED_BACK, pt("Cluster", "Failed", "cl2", start=-5, end=-1)),
            "Failed",
        ),
        (
            wf("Success", PRE_OK, ROLLED_BACK, pt("Cluster", "Success", "cl2", start=-5, end=-1)),
            "Succeeded",
        ),
        # ... while tasks of the attempt that was rolled back do not undo it.
        (
            wf("Running", PRE_OK, pt("Cluster", "Failed", "cl", start=-20, end=-16), ROLLED_BACK),
            "Rolled back",
        ),
        # No phase in the answer: the tasks say what is going on.
        (wf(None, PRE_OK, pt("Cluster", "Running", "cl", start=-5)), "Running"),
        (wf(None, PRE_OK, pt("Cluster", "Failed", "cl", start=-5, end=-1)), "Failed"),
        (wf(None, pt("PreCheck", "Init")), "Not started"),
    ],
)
def test_human_state_after_a_rollback_and_without_a_phase(workflow: Workflow, state: str) -> None:
    assert human_state(workflow) == state


@pytest.mark.parametrize(
    ("progress", "shown"),
    [("45%", "45%"), (" 12.5 % ", "12.5%"), (True, None), (False, None), ("%", None)],
)
def test_percent_reads_a_percent_sign_and_refuses_booleans(progress: object, shown: str) -> None:
    assert percent(progress) == shown  # type: ignore[arg-type]
