"""The watcher's own health: store outages, and request-budget episodes.

When to say ``watcher.store_failed`` and ``store_recovered``, and the events of a demand
beyond the request budget (``watcher.budget_exceeded`` / ``budget_recovered``; when an
episode starts and ends is ``runtime.budget.PollBudget``'s call).

Pure: the runtime feeds one observation per check (a one-line problem, or None when the store
committed fine) and sends the events this returns. One outage gives one failed alert and one
recovered alert, however long it lasts and however often commits fail meanwhile: recovery is
declared only after the store stayed good for ``recover_after``, so a disk that frees a few
pages and fills again does not page people twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.core import keys
from watcher.core.events import Event, Kind, Severity, TargetRef

# Who a self-alert is about: the watcher process itself, not a configured target.
SELF = TargetRef(name="watcher", region="-", project_id="-", cluster_id="-", api="cce")


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Where the store stands: ``failing_since`` is the outage start, ``reason`` the latest
    problem; ``good_since`` is the first good check after a failure (recovery pending)."""

    failing_since: datetime | None = None
    reason: str | None = None
    good_since: datetime | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None


def observe(
    prev: StoreHealth,
    now: datetime,
    problem: str | None,
    *,
    recover_after: timedelta,
    host: str = "",
) -> tuple[list[Event], StoreHealth]:
    """Fold one check into the state; return the events to send and the new state.

    ``host`` names the machine in the messages: several watchers may page one channel.
    """
    if problem is not None:
        if prev.failing_since is None:
            new = StoreHealth(failing_since=now, reason=problem)
            return [store_failed(problem, now, host)], new
        return [], StoreHealth(failing_since=prev.failing_since, reason=problem)
    if prev.failing_since is None:
        return [], prev
    good_since = prev.good_since or now
    if now - good_since < recover_after:
        return [], StoreHealth(prev.failing_since, prev.reason, good_since)
    return [store_recovered(prev.failing_since, now, host)], StoreHealth()


def _who(host: str) -> str:
    return f"The watcher on {host}" if host else "The watcher"


def store_failed(reason: str, since: datetime, host: str = "") -> Event:
    return Event(
        dedup_key=keys.store_health("failed", since),
        kind=str(Kind.STORE_FAILED),
        severity=Severity.FAILURE,
        target=SELF,
        observed_at=since,
        message=f"{_who(host)} cannot write its state store: {reason}",
        started_at=since,
        details={"reason": reason, "host": host} if host else {"reason": reason},
    )


def store_recovered(since: datetime, now: datetime, host: str = "") -> Event:
    minutes = max(0, round((now - since).total_seconds() / 60))
    return Event(
        dedup_key=keys.store_health("recovered", since),
        kind=str(Kind.STORE_RECOVERED),
        severity=Severity.SUCCESS,
        target=SELF,
        observed_at=now,
        message=f"{_who(host)} can write its state store again (after about {minutes} min)",
        started_at=since,
        ended_at=now,
    )


def budget_exceeded(
    lane: str, demanded: float, allowed: float, since: datetime, host: str = ""
) -> Event:
    where = f" for {lane}" if lane else ""
    return Event(
        dedup_key=keys.budget("exceeded", lane, since),
        kind=str(Kind.BUDGET_EXCEEDED),
        severity=Severity.WARNING,
        target=SELF,
        observed_at=since,
        message=(
            f"{_who(host)} needs {demanded:.1f} requests/s{where} but may send {allowed:g}: "
            "poll intervals are stretched (idle workflows first)"
        ),
        started_at=since,
        details={"lane": lane, "demanded_rps": round(demanded, 3), "allowed_rps": allowed},
    )


def budget_recovered(
    lane: str, demanded: float, allowed: float, since: datetime, now: datetime, host: str = ""
) -> Event:
    where = f" for {lane}" if lane else ""
    return Event(
        dedup_key=keys.budget("recovered", lane, since),
        kind=str(Kind.BUDGET_RECOVERED),
        severity=Severity.SUCCESS,
        target=SELF,
        observed_at=now,
        message=(
            f"{_who(host)} is within its request budget{where} again "
            f"({demanded:.1f} of {allowed:g} requests/s): intervals are no longer stretched"
        ),
        started_at=since,
        ended_at=now,
        details={"lane": lane, "demanded_rps": round(demanded, 3), "allowed_rps": allowed},
    )
