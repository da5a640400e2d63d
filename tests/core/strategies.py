"""Hypothesis strategies and builders for the engine tests: workflows and their histories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from watcher.core.events import TargetRef
from watcher.core.models import Point, Workflow

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
UID = "wf-0001"
FROM, TO = "v1.27.3-r0", "v1.28.1-r0"
TARGET = TargetRef(name="prod", region="ap-southeast-1", project_id="p" * 32, cluster_id="c-1")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def pt(
    task_type: str,
    status: str | None = None,
    task_id: str | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    expire: float | None = None,
) -> Point:
    """A point; times are minutes after T0."""
    return Point(
        task_type=task_type,
        task_id=task_id,
        status=status,
        started_at=at(start) if start is not None else None,
        ended_at=at(end) if end is not None else None,
        expires_at=at(expire) if expire is not None else None,
    )


def wf(phase: str | None, *points: Point, uid: str = UID) -> Workflow:
    return Workflow(
        uid=uid, cluster_version=FROM, target_version=TO, phase=phase, points=tuple(points)
    )


PHASES = ["Init", "Running", "Pending", "Success", "Cancel", "Paused", None]
STATUSES = ["Init", "Queuing", "Running", "Success", "Failed", "Pause", None]
TYPES = ["PreCheck", "Snapshot", "Cluster", "PostCheck", "Rollback", "Canary"]
TASK_IDS = ["t-1", "t-2", "t-3", None]
OFFSETS = [None, 0.0, 5.0, 30.0, 200.0]  # minutes after T0


@st.composite
def points(draw: st.DrawFn) -> Point:
    return Point(
        task_type=draw(st.sampled_from(TYPES)),
        task_id=draw(st.sampled_from(TASK_IDS)),
        status=draw(st.sampled_from(STATUSES)),
        started_at=_maybe(draw(st.sampled_from(OFFSETS))),
        ended_at=_maybe(draw(st.sampled_from(OFFSETS))),
        expires_at=_maybe(draw(st.sampled_from([None, 60.0, 120.0, 600.0]))),
    )


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    # Mostly distinct task types (as the cloud sends), sometimes a repeated one.
    pts = draw(st.lists(points(), min_size=0, max_size=5))
    return wf(draw(st.sampled_from(PHASES)), *pts)


@dataclass(frozen=True)
class Step:
    """One moment of a history: a snapshot, a time-only tick (None) or a 404 (vanished)."""

    gap: timedelta
    workflow: Workflow | None
    vanished: bool = False


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    first = draw(workflows())
    steps = [Step(timedelta(0), first)]
    current = first
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        gap = timedelta(seconds=draw(st.sampled_from([0, 10, 60, 200, 3600, 4 * 3600, 30000])))
        kind = draw(st.sampled_from(["snap", "snap", "snap", "same", "time", "vanished"]))
        if kind == "snap":
            current = draw(workflows())
            steps.append(Step(gap, current))
        elif kind == "same":
            steps.append(Step(gap, current))
        elif kind == "time":
            steps.append(Step(gap, None))
        else:
            steps.append(Step(gap, None, vanished=True))
    return steps


def _maybe(minutes: float | None) -> datetime | None:
    return at(minutes) if minutes is not None else None
