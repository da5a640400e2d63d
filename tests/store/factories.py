"""Small builders shared by the store and dispatcher tests: events, a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.core.events import Event, Severity, TargetRef
from watcher.core.models import Workflow
from watcher.core.state import WatchState

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

TARGET = TargetRef(
    name="prod",
    region="ap-southeast-1",
    project_id="0123456789abcdef0123456789abcdef",
    cluster_id="cluster-1",
    labels={"env": "prod"},
)


def make_event(
    key: str,
    *,
    kind: str = "task.started",
    severity: Severity = Severity.INFO,
    at: datetime = T0,
    **extra: Any,
) -> Event:
    """An event with the given dedup key; everything else plausible and fixed."""
    return Event(
        dedup_key=key,
        kind=kind,
        severity=severity,
        target=TARGET,
        observed_at=at,
        message=f"event {key}",
        workflow_id="wf-1",
        cluster_name="prod-cluster",
        **extra,
    )


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def make_state(
    phase: str = "Running", *, uid: str = "wf-1", seq: int = 0, **extra: Any
) -> WatchState:
    """A small watch state; ``seq`` (its phase_seq) tells two states apart."""
    return WatchState(
        workflow=Workflow(uid=uid, phase=phase, **extra), observed_at=T0, phase_seq=seq
    )
