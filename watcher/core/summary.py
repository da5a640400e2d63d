"""One JSON-ready view of a watched workflow, shared by `check`, the HTTP API and the page.

Pure: given the workflow, its target and the time, it computes durations and the pre-check
expiry countdown. The shape is documented in watcher/http/status.py and kept stable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watcher.core.events import TargetRef
from watcher.core.models import Point, TaskStatus, Workflow
from watcher.core.rules import precheck_expiry
from watcher.core.timeutil import iso
from watcher.core.wording import FAILED, format_duration, human_state, percent


def point_duration_s(point: Point, now: datetime) -> float | None:
    """Seconds a task ran: end - start, or now - start while it runs."""
    if point.started_at is None:
        return None
    end = point.ended_at
    if end is None:
        if point.status not in (TaskStatus.RUNNING, TaskStatus.QUEUING):
            return None
        end = now
    return max(0.0, (end - point.started_at).total_seconds())


def summarize(
    workflow: Workflow,
    *,
    target: TargetRef,
    now: datetime,
    key: str | None = None,
    display_name: str | None = None,
    cluster_name: str | None = None,
    observed_at: datetime | None = None,
    next_poll_at: datetime | None = None,
    last_error: str | None = None,
    progress: str | None = None,
    paused: bool = False,
    console_url: str | None = None,
) -> dict[str, Any]:
    """``state`` is the human state (Pending reads "Failed"; see wording.human_state),
    ``phase`` the raw one; ``progress`` the upgrade task's percentage while it runs."""
    expires = precheck_expiry(workflow)
    return {
        "key": key or f"{target.name}/{workflow.uid}",
        "target": target.to_dict(),
        "display_name": display_name,
        "cluster_name": cluster_name,
        "workflow_id": workflow.uid,
        "phase": workflow.phase,
        "state": human_state(workflow),
        "progress_percent": percent(progress),
        "paused": paused,
        "console_url": console_url,
        "from_version": workflow.cluster_version,
        "to_version": workflow.target_version,
        "observed_at": iso(observed_at),
        "next_poll_at": iso(next_poll_at),
        "last_error": last_error,
        "precheck_expires_at": iso(expires),
        "precheck_expires_in_s": (expires - now).total_seconds() if expires else None,
        "points": [
            {
                "task_type": p.task_type,
                "task_id": p.task_id,
                "status": p.status,
                "started_at": iso(p.started_at),
                "ended_at": iso(p.ended_at),
                "expires_at": iso(p.expires_at),
                "duration_s": point_duration_s(p, now),
            }
            for p in workflow.points
        ],
        "lines": [
            {"start": ln.start, "end": ln.end, "critical": ln.critical} for ln in workflow.lines
        ],
    }


def needs_attention(summary: dict[str, Any]) -> bool:
    """True when `check` must exit 1: the workflow failed (its rollback included), or its
    pre-check expired."""
    expires_in = summary.get("precheck_expires_in_s")
    return summary.get("state") == FAILED or (expires_in is not None and expires_in <= 0)


def human_duration(seconds: float | None) -> str:
    """The one duration formatter (wording.format_duration), '-' when unknown, sign kept."""
    if seconds is None:
        return "-"
    text = format_duration(abs(round(seconds)))
    return f"-{text}" if seconds < 0 and text != "0s" else text


def format_text(summary: dict[str, Any]) -> str:
    """The `check` table for one workflow: header, one line per task, expiry countdown."""
    target = summary["target"]
    cluster = summary.get("cluster_name") or target["cluster_id"]
    name = summary["display_name"] or target["name"]
    state = summary.get("state") or summary.get("phase") or "unknown"
    extra = ""
    if summary.get("paused"):
        extra += "  PAUSED"
    if summary.get("progress_percent"):
        extra += f"  progress {summary['progress_percent']}"
    lines = [
        f"{name}  cluster {cluster}  workflow {summary['workflow_id']}",
        f"  {summary.get('from_version') or '?'} -> {summary.get('to_version') or '?'}"
        f"  {state} (phase {summary.get('phase') or 'unknown'}){extra}",
    ]
    for point in summary["points"]:
        status = point["status"] or "not run"
        duration = point["duration_s"]
        suffix = f"  ({human_duration(duration)})" if duration is not None else ""
        lines.append(f"    {point['task_type'] or '?':<10} {status:<10}{suffix}".rstrip())
    expires_in = summary.get("precheck_expires_in_s")
    if expires_in is not None:
        if expires_in > 0:
            lines.append(f"  pre-check result expires in {human_duration(expires_in)}")
        else:
            lines.append(
                f"  pre-check result EXPIRED {human_duration(-expires_in)} ago: run it again"
            )
    if summary.get("console_url"):
        lines.append(f"  console: {summary['console_url']}")
    return "\n".join(lines)
