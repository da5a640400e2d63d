"""What the HTTP surface needs to know about the running daemon, as a Protocol.

Why this module exists: the HTTP layer must not import the runtime (the runtime imports
it). The runtime implements ``StatusSource``; tests pass a static double. This module also
fixes the JSON shape of ``/api/v1/workflows`` (``WorkflowView``) and offers
``workflow_view`` so the runtime can build it from the core models instead of by hand.

The workflows shape (every key always present; ``null`` when unknown; times are ISO 8601
strings with offset)::

    {
      "key": str,                      # the store's workflow key
      "target": {"name", "region", "project_id", "cluster_id", "api", "labels": {str: str}},
      "display_name": str | null,      # the target's display name, else null
      "cluster_name": str | null,
      "workflow_id": str,
      "phase": str | null,             # open set: Init, Running, Pending, Success, Cancel, ...
      "from_version": str | null,
      "to_version": str | null,
      "observed_at": str | null,       # when the watcher last saw it
      "next_poll_at": str | null,
      "last_error": str | null,        # last poll error, secrets already removed
      "precheck_expires_at": str | null,   # only while PreCheck passed and Cluster not begun
      "precheck_expires_in_s": float | null,  # negative once expired
      "points": [{"task_type", "task_id", "status", "started_at", "ended_at",
                  "expires_at", "duration_s"}],   # in the API's order; duration of a running
                                                  # task counts up to "now"
      "lines": [{"start", "end", "critical"}],    # edges by task type
      "ack": {"workflow_key", "by", "note", "created_at", "until", "ended_at"} | null
                                       # an operator's acknowledgement in force
    }
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypedDict

from watcher.core.events import TargetRef
from watcher.core.models import Workflow
from watcher.core.summary import summarize


class StatusSource(Protocol):
    """The daemon's answers to the probes and the workflows list (sync, cheap, cached)."""

    def healthy(self) -> tuple[bool, str]:
        """Liveness: the loop answers and the scheduler runs; the string says why not."""
        ...

    def ready(self) -> tuple[bool, list[str]]:
        """Readiness: config loaded, store reachable, first poll round done; else reasons."""
        ...

    def workflows(self) -> list[dict[str, Any]]:
        """Every watched workflow as a ``WorkflowView`` (see the module docstring)."""
        ...

    def targets(self) -> list[dict[str, Any]]:
        """Each target's health: ``{"name", "consecutive_failures", "failing_since",
        "last_error_kind", "unsaved_error", "discovery_error"}`` (a cluster target whose
        listing fails has no workflow card to show its error on)."""
        ...


class TargetView(TypedDict):
    name: str
    region: str
    project_id: str
    cluster_id: str
    api: str
    labels: dict[str, str]


class PointView(TypedDict):
    task_type: str
    task_id: str | None
    status: str | None
    started_at: str | None
    ended_at: str | None
    expires_at: str | None
    duration_s: float | None


class LineView(TypedDict):
    start: str | None
    end: str | None
    critical: bool | None


class WorkflowView(TypedDict):
    key: str
    target: TargetView
    display_name: str | None
    cluster_name: str | None
    workflow_id: str
    phase: str | None
    state: str  # for people: Running, Failed, Rolling back, Rolled back, Succeeded, ...
    progress_percent: str | None
    paused: bool
    console_url: str | None
    from_version: str | None
    to_version: str | None
    observed_at: str | None
    next_poll_at: str | None
    last_error: str | None
    precheck_expires_at: str | None
    precheck_expires_in_s: float | None
    points: list[PointView]
    lines: list[LineView]
    ack: dict[str, Any] | None


WORKFLOW_VIEW_KEYS = frozenset(WorkflowView.__annotations__)
POINT_VIEW_KEYS = frozenset(PointView.__annotations__)


def workflow_view(
    *,
    key: str,
    target: TargetRef,
    workflow: Workflow,
    now: datetime,
    display_name: str | None = None,
    cluster_name: str | None = None,
    observed_at: datetime | None = None,
    next_poll_at: datetime | None = None,
    last_error: str | None = None,
    ack: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one workflows-list entry from core models (pure; ``now`` drives countdowns).

    The shape is built by watcher.core.summary, which `check --json` shares; ``ack`` is
    the acknowledgement in force (``Acknowledgement.to_json()``), if any.
    """
    return summarize(
        workflow,
        target=target,
        now=now,
        key=key,
        display_name=display_name,
        cluster_name=cluster_name,
        observed_at=observed_at,
        next_poll_at=next_poll_at,
        last_error=last_error,
    ) | {"ack": ack}
