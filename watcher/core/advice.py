"""What a failed pre-check says and what the on-call engineer should do next (issue 9).

The engine puts the failed check items (as plain dicts, JSON-ready) and a ``next_step``
sentence into an event's details; templates and the status page show them as they are.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from watcher.core.models import CheckItem, PreCheckTask, TaskType

MAX_ITEMS_IN_MESSAGE = 3

EXCEPTION = "Exception"  # must be fixed
RISK = "Risk"  # may be confirmed and skipped


def item_dict(item: CheckItem) -> dict[str, Any]:
    """One failed check item as stored in ``details["failed_items"]``."""
    return {
        "name": item.name,
        "kind": item.kind,
        "group": item.group,
        "level": item.level,
        "message": item.message,
        "node": item.node,
        "error_codes": list(item.error_codes),
        "risk": item.risk,
    }


def failed_item_dicts(task: PreCheckTask) -> list[dict[str, Any]]:
    return [item_dict(i) for i in task.failed_items]


def item_text(item: Mapping[str, Any]) -> str:
    """``NodeOSCheck [Exception, NodeCheck, Fatal] on node-1: message (codes: X; risk: Y)``."""
    text = str(item.get("name") or "unnamed check")
    tags = [str(item[k]) for k in ("kind", "group", "level") if item.get(k)]
    if tags:
        text += f" [{', '.join(tags)}]"
    if item.get("node"):
        text += f" on {item['node']}"
    if item.get("message"):
        text += f": {item['message']}"
    extra = []
    codes = item.get("error_codes") or []
    if codes:
        extra.append("codes " + ", ".join(str(c) for c in codes))
    if item.get("risk"):
        extra.append(f"risk: {item['risk']}")
    if extra:
        text += f" ({'; '.join(extra)})"
    return text


def _item_short(item: Mapping[str, Any]) -> str:
    """``NodeOSCheck [Exception] on node-1``: the line names the items; the message lists
    each in full (item_text) under it, so the text is not said twice."""
    text = str(item.get("name") or "unnamed check")
    tag = item.get("kind") or item.get("level")
    if tag:
        text += f" [{tag}]"
    if item.get("node"):
        text += f" on {item['node']}"
    return text


def items_text(items: Sequence[Mapping[str, Any]], task_message: str | None = None) -> str:
    """A one-line summary of the failed items, or the task's own message when it has none."""
    if not items:
        if task_message:
            return f"the pre-check reports: {task_message}"
        return "no failed check item reported"
    shown = [_item_short(i) for i in items[:MAX_ITEMS_IN_MESSAGE]]
    more = len(items) - len(shown)
    noun = "check" if len(items) == 1 else "checks"
    return (
        f"{len(items)} {noun} failed: " + "; ".join(shown) + (f"; and {more} more" if more else "")
    )


def precheck_next_step(items: Sequence[Mapping[str, Any]] | None) -> str:
    """Which items must be fixed, which may be confirmed, and that the check must run again."""
    if not items:
        return "Fix the cause the pre-check reports, then run the pre-check again."
    must = [str(i.get("name") or "?") for i in items if i.get("kind") != RISK]
    may = [str(i.get("name") or "?") for i in items if i.get("kind") == RISK]
    parts = []
    if must:
        parts.append(f"fix {', '.join(must)} (must be fixed)")
    if may:
        parts.append(f"fix or confirm and skip {', '.join(may)} (risks)")
    text = f"{'; '.join(parts)}; then run the pre-check again."
    return text[0].upper() + text[1:]  # not str.capitalize(): item names keep their case


def task_next_step(task_type: str | None) -> str:
    """The next step after a task of this type failed."""
    if task_type == TaskType.PRECHECK:
        return precheck_next_step(None)
    if task_type == TaskType.CLUSTER:
        return (
            "Find the cause in the CCE console, fix it, then Retry the upgrade; "
            "or roll the cluster back."
        )
    if task_type == TaskType.ROLLBACK:
        return (
            "The rollback failed and the cluster may not be usable: check the cluster "
            "in the CCE console now, retry the rollback or contact Huawei Cloud support."
        )
    if task_type == TaskType.SNAPSHOT:
        return "Fix the cause in the CCE console, then Retry the snapshot, or cancel the upgrade."
    if task_type == TaskType.POSTCHECK:
        return "The cluster was upgraded but the post-check failed: check workloads and nodes."
    return "Check the workflow in the CCE console: retry, roll back or cancel it."
