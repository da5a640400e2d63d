"""The knobs of the pure core: when time rules fire and how often a target is polled.

These are plain frozen values so that the engine and the cadence stay pure functions of
(previous state, current snapshot, now, policy). The config layer builds them from
Settings; the defaults are the ones SPEC.md sections 3 and 5 name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

DEFAULT_STALL_THRESHOLDS: Mapping[str, timedelta] = {
    "PreCheck": timedelta(minutes=30),
    "Snapshot": timedelta(minutes=30),
    "Cluster": timedelta(minutes=120),
    "PostCheck": timedelta(minutes=30),
    "Rollback": timedelta(minutes=60),
}
DEFAULT_STALL_DEFAULT = timedelta(minutes=60)  # task types the table does not name
DEFAULT_PRECHECK_LEADS: tuple[timedelta, ...] = (timedelta(minutes=60), timedelta(minutes=15))
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)
DEFAULT_LATE_AFTER = timedelta(seconds=150)


def normalise_leads(leads: Iterable[timedelta]) -> tuple[timedelta, ...]:
    """Pre-check lead times as unique positive leads, longest first (the config validates
    with this too, so both layers accept and reject the same values)."""
    unique = tuple(sorted(set(leads), reverse=True))
    if any(lead <= timedelta(0) for lead in unique):
        raise ValueError("every pre-check lead time must be longer than zero")
    return unique


def _default_stall_thresholds() -> dict[str, timedelta]:
    return dict(DEFAULT_STALL_THRESHOLDS)


@dataclass(frozen=True, slots=True)
class Policy:
    """Time rules of the engine (SPEC.md section 3).

    ``precheck_leads`` are normalised to unique positive leads, longest first.
    ``repeat_interval`` spaces both the repeats of ``task.stalled`` and the
    ``workflow.reminder`` events. An event is marked late when the previous snapshot is older
    than ``late_after`` at the time of the new one.
    """

    precheck_leads: tuple[timedelta, ...] = DEFAULT_PRECHECK_LEADS
    stall_thresholds: Mapping[str, timedelta] = field(
        default_factory=_default_stall_thresholds, hash=False
    )
    stall_default: timedelta = DEFAULT_STALL_DEFAULT
    repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL
    late_after: timedelta = DEFAULT_LATE_AFTER

    def __post_init__(self) -> None:
        object.__setattr__(self, "precheck_leads", normalise_leads(self.precheck_leads))
        object.__setattr__(self, "stall_thresholds", dict(self.stall_thresholds))
        for name, value in (
            ("stall_default", self.stall_default),
            ("repeat_interval", self.repeat_interval),
            *((f"stall_thresholds[{k}]", v) for k, v in self.stall_thresholds.items()),
        ):
            if value <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.late_after < timedelta(0):
            raise ValueError("late_after must not be negative")

    def stall_threshold(self, task_type: str) -> timedelta:
        """The stall threshold of a task type; unknown types get ``stall_default``."""
        return self.stall_thresholds.get(task_type, self.stall_default)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Poll intervals in seconds (SPEC.md section 5)."""

    active_s: float = 15.0  # a point is Queuing or Running
    idle_s: float = 60.0  # Init, or pre-check done and the upgrade not started
    failed_s: float = 60.0  # phase Pending
    discovery_s: float = 120.0  # listing a cluster's workflows
    min_s: float = 5.0  # floor for every computed interval

    def __post_init__(self) -> None:
        for name in ("active_s", "idle_s", "failed_s", "discovery_s", "min_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
