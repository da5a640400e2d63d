"""Dedup keys: how they are built and how they are read back, in one module.

A key names one fact for good: the store refuses a second event with the same key, so a
replay after a crash, a restart or a duplicate poll never notifies twice. Keys are ``:``
separated; every component taken from the cloud is escaped (``%`` as ``%25``, ``:`` as
``%3A``), so a ``:`` in a task ID cannot forge another key.

Workflow keys (built by the diff and the time rules, read back by ``prune``):

- ``{uid}:detected``                                  workflow.detected (first sight)
- ``{uid}:vanished``                                  workflow.vanished (once per workflow)
- ``{uid}:phase:{seq}:{phase}``                       started, failed, resumed, succeeded,
                                                       cancelled, workflow.changed; ``seq``
                                                       counts phase changes, so re-entering
                                                       a phase is a new key
- ``{uid}:reminder:{seq}:{k}``                        k-th reminder of the Pending entered at
                                                       phase change ``seq``
- ``{uid}:task:{slot}:a{n}:{task_id|-}:{status}``     queued, started, succeeded, failed and
                                                       task.changed
- ``{uid}:task:{slot}:a{n}:{task_id|-}:retried``      task.retried
- ``{uid}:task:{slot}:a{n}:{task_id|-}:paused:{k}``   k-th task.paused of attempt n
- ``{uid}:task:{slot}:a{n}:stalled:{k}``              k-th task.stalled of attempt n
- ``{uid}:task:PreCheck:a{n}:{task_id|-}:expiring:{expiry}:{lead}m`` and
  ``{uid}:task:PreCheck:a{n}:{task_id|-}:expired:{expiry}``   precheck.expiring / expired

``slot`` is the task type (``Rollback#2`` for a second point of the same type) and ``n`` the
attempt counter of that slot (watcher.core.diff says when it grows). Target health keys
(watcher.core.health) are ``watcher:{name}@{cluster_id}:{what}:{outage start}``
(``target_outage``); the watcher's own store alerts ``watcher:store:{what}:{since}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from watcher.core.models import Phase
from watcher.core.state import WatchState
from watcher.core.timeutil import stamp

__all__ = [
    "detected",
    "esc",
    "k_index",
    "lead_tag",
    "max_k",
    "nth",
    "parse",
    "paused",
    "phase",
    "precheck_expired",
    "precheck_expiring",
    "prune",
    "reminder_prefix",
    "retried",
    "stalled_prefix",
    "store_health",
    "target",
    "target_outage",
    "task_base",
    "task_status",
    "unesc",
    "vanished",
]


def esc(part: str) -> str:
    """One key component: ``%`` as ``%25`` and ``:`` as ``%3A`` (in that order)."""
    if "%" not in part and ":" not in part:
        return part  # nearly every uid, slot and task id: two scans instead of two copies
    return part.replace("%", "%25").replace(":", "%3A")


def unesc(part: str) -> str:
    """The inverse of ``esc``."""
    return part.replace("%3A", ":").replace("%25", "%")


# ------------------------------------------------------------------------- build


def detected(uid: str) -> str:
    return f"{esc(uid)}:detected"


def vanished(uid: str) -> str:
    return f"{esc(uid)}:vanished"


def phase(uid: str, seq: int, new_phase: str | None) -> str:
    return f"{esc(uid)}:phase:{seq}:{esc(new_phase or '-')}"


def reminder_prefix(uid: str, seq: int) -> str:
    """Prefix of the reminders of the Pending entered at phase change ``seq`` (``nth``)."""
    return f"{esc(uid)}:reminder:{seq}:"


def task_base(uid: str, slot: str, attempt: int, task_id: str | None) -> str:
    """The common head of every key of one attempt of one point."""
    return f"{esc(uid)}:task:{esc(slot)}:a{attempt}:{esc(task_id or '-')}"


def task_status(base: str, status: str) -> str:
    return f"{base}:{esc(status)}"


def retried(base: str) -> str:
    return f"{base}:retried"


def paused(base: str, k: int) -> str:
    return f"{base}:paused:{k}"


def stalled_prefix(uid: str, slot: str, attempt: int) -> str:
    """Prefix of the stall notices of one attempt of one point (``nth``)."""
    return f"{esc(uid)}:task:{esc(slot)}:a{attempt}:stalled:"


def nth(prefix: str, k: int) -> str:
    """The k-th key of a periodic rule (stall notices, reminders)."""
    return f"{prefix}{k}"


def precheck_expiring(base: str, expiry: datetime, lead: timedelta) -> str:
    return f"{base}:expiring:{stamp(expiry)}:{lead_tag(lead)}"


def precheck_expired(base: str, expiry: datetime) -> str:
    return f"{base}:expired:{stamp(expiry)}"


def lead_tag(lead: timedelta) -> str:
    """``15m`` for whole minutes; ``20s`` otherwise (sub-minute leads must not collide)."""
    seconds = int(lead.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def target(name: str, cluster_id: str) -> str:
    """The head of a target health key: ``watcher:{name}@{cluster_id}``."""
    return f"watcher:{esc(name)}@{esc(cluster_id)}"


def target_outage(name: str, cluster_id: str, what: str, start: datetime) -> str:
    """A target health key: ``watcher:{name}@{cluster_id}:{what}:{outage start}`` where
    ``what`` is ``unreachable``, ``auth_failed`` or ``recovered`` (watcher.core.health)."""
    return f"{target(name, cluster_id)}:{what}:{stamp(start)}"


def store_health(what: str, since: datetime) -> str:
    """The watcher's own store alerts: ``watcher:store:{failed|recovered}:{since}``."""
    return f"watcher:store:{what}:{stamp(since)}"


def budget(what: str, lane: str, since: datetime) -> str:
    """The request budget's episodes: ``watcher:budget:{exceeded|recovered}:{lane}:{since}``."""
    return f"watcher:budget:{what}:{esc(lane)}:{stamp(since)}"


# ------------------------------------------------------------------------- read


def parse(key: str) -> tuple[str, ...]:
    """A key's components, unescaped (the inverse of the builders above)."""
    return tuple(unesc(part) for part in key.split(":"))


def prune(fired: Iterable[str], state: WatchState) -> frozenset[str]:
    """Drop keys that can never fire again (older attempts, lower repeats, old Pendings).

    Works on the raw split (no unescaping but the slot's): it runs on every poll over
    every fired key, so it stays a single cheap pass.
    """
    uid = esc(state.workflow.uid)
    keep: set[str] = set()
    best: dict[str, int] = {}  # periodic prefix -> highest k kept
    for key in fired:
        parts = key.split(":")
        try:
            if parts[0] != uid:
                continue
            if parts[1] == "task":
                track = state.tracks.get(unesc(parts[2]))
                if track is not None and int(parts[3][1:]) < track.attempt:
                    continue
                if parts[4] == "stalled":
                    prefix = ":".join(parts[:5]) + ":"
                    best[prefix] = max(best.get(prefix, 0), int(parts[5]))
                    continue
            elif parts[1] == "reminder":
                if state.workflow.phase != Phase.PENDING or int(parts[2]) != state.phase_seq:
                    continue
                prefix = ":".join(parts[:3]) + ":"
                best[prefix] = max(best.get(prefix, 0), int(parts[3]))
                continue
        except (IndexError, ValueError):
            pass  # a key of a shape we do not know: keep it, it costs nothing
        keep.add(key)
    keep.update(f"{prefix}{k}" for prefix, k in best.items())
    return frozenset(keep)


def k_index(fired: Iterable[str]) -> dict[str, int]:
    """``max_k`` for every prefix at once: periodic key prefix -> highest k fired."""
    best: dict[str, int] = {}
    for key in fired:
        head, sep, tail = key.rpartition(":")
        if not sep:
            continue
        try:
            k = int(tail)
        except ValueError:
            continue
        prefix = head + sep
        best[prefix] = max(best.get(prefix, 0), k)
    return best


def max_k(fired: Iterable[str], prefix: str) -> int:
    """The highest k fired of the periodic rule ``prefix`` (0: none yet)."""
    best = 0
    for key in fired:
        if key.startswith(prefix):
            try:
                best = max(best, int(key[len(prefix) :]))
            except ValueError:
                continue
    return best
