"""Target health: turn a run of failed polls into one alert per outage, and one recovery.

The runtime records every poll of a target here (success, or its ``PollOutcome``) and
persists the returned ``TargetHealth``. Pure functions: no clock, no I/O. Dedup keys carry
the outage start, so a second outage alerts again while a replay of the same one does not.

Key formats (``{target}`` is ``{name}@{cluster_id}``, ``:`` and ``%`` escaped):

- ``watcher:{target}:unreachable:{outage start}``
- ``watcher:{target}:auth_failed:{auth outage start}``
- ``watcher:{target}:recovered:{outage start}``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.core import keys
from watcher.core.events import Event, Kind, Severity, TargetRef
from watcher.core.outcome import PollOutcome
from watcher.core.timeutil import from_iso, iso, utc
from watcher.core.wording import format_duration

_DESCRIPTIONS: dict[str, str] = {
    PollOutcome.AUTH: "credentials rejected",
    PollOutcome.TRANSPORT: "no answer",
    PollOutcome.SERVER: "server error",
    PollOutcome.THROTTLED: "throttled",
    PollOutcome.BAD_RESPONSE: "unexpected answer",
    PollOutcome.API: "API error",
    PollOutcome.STORE: "state store failed",
    PollOutcome.INTERNAL: "internal error",
}


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """Where a target stands after its latest poll.

    ``failing_since`` is the first failure of the current run (the outage start);
    ``unreachable_since`` and ``auth_failed_since`` are set once the matching alert fired,
    and say when that outage started.
    """

    consecutive_failures: int = 0
    failing_since: datetime | None = None
    unreachable_since: datetime | None = None
    auth_failed_since: datetime | None = None
    last_error_kind: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "consecutive_failures": self.consecutive_failures,
            "failing_since": iso(self.failing_since),
            "unreachable_since": iso(self.unreachable_since),
            "auth_failed_since": iso(self.auth_failed_since),
            "last_error_kind": self.last_error_kind,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetHealth:
        return cls(
            consecutive_failures=int(data.get("consecutive_failures", 0)),
            failing_since=from_iso(data.get("failing_since")),
            unreachable_since=from_iso(data.get("unreachable_since")),
            auth_failed_since=from_iso(data.get("auth_failed_since")),
            last_error_kind=data.get("last_error_kind"),
        )


def record_success(
    prev: TargetHealth, now: datetime, *, target: TargetRef
) -> tuple[tuple[Event, ...], TargetHealth]:
    """A good poll: ``watcher.target_recovered`` if an unreachable or auth alert was sent."""
    now = utc(now)
    if prev.unreachable_since is None and prev.auth_failed_since is None:
        return (), TargetHealth()
    start = prev.failing_since or prev.unreachable_since or prev.auth_failed_since or now
    outage = f" after {format_duration(now - start)}" if now >= start else ""
    polls = prev.consecutive_failures
    event = _event(
        target,
        now,
        keys.target_outage(target.name, target.cluster_id, "recovered", start),
        Kind.TARGET_RECOVERED,
        Severity.SUCCESS,
        f"Target {target.name} answers again{outage} ({polls} failed polls)",
        {
            "outage_started_at": iso(start),
            "failed_polls": polls,
            "last_error_kind": prev.last_error_kind,
        },
    )
    return (event,), TargetHealth()


def record_failure(
    prev: TargetHealth,
    now: datetime,
    error_kind: PollOutcome | str,
    policy_threshold: int,
    *,
    target: TargetRef,
) -> tuple[tuple[Event, ...], TargetHealth]:
    """A failed poll of any kind (an unknown kind is treated like a transport failure).

    ``watcher.auth_failed`` fires on the first auth failure of an outage (the client already
    refreshed credentials once). ``watcher.target_unreachable`` fires once per outage when
    the run of failures reaches ``policy_threshold`` and the latest failure is not an auth
    failure: an auth outage is already alerted by its own kind.
    """
    now = utc(now)
    error_kind = str(error_kind)  # persisted and shown as the plain label value
    count = prev.consecutive_failures + 1
    since = prev.failing_since or now
    new = TargetHealth(
        consecutive_failures=count,
        failing_since=since,
        unreachable_since=prev.unreachable_since,
        auth_failed_since=prev.auth_failed_since,
        last_error_kind=error_kind,
    )
    events: list[Event] = []
    what = _DESCRIPTIONS.get(error_kind, error_kind or "failure")
    if error_kind == PollOutcome.AUTH and prev.auth_failed_since is None:
        new = TargetHealth(count, since, new.unreachable_since, now, error_kind)
        events.append(
            _event(
                target,
                now,
                keys.target_outage(target.name, target.cluster_id, "auth_failed", now),
                Kind.AUTH_FAILED,
                Severity.FAILURE,
                f"Target {target.name}: IAM or CCE rejects the credentials (401/403) even "
                "after a refresh; polling slowly until they are fixed",
                {"failed_polls": count},
            )
        )
    elif (
        error_kind != PollOutcome.AUTH
        and prev.unreachable_since is None
        and count >= max(1, policy_threshold)
    ):
        new = TargetHealth(count, since, since, new.auth_failed_since, error_kind)
        events.append(
            _event(
                target,
                now,
                keys.target_outage(target.name, target.cluster_id, "unreachable", since),
                Kind.TARGET_UNREACHABLE,
                Severity.FAILURE,
                f"Target {target.name} unreachable: {count} failed polls in a row since "
                f"{since.strftime('%Y-%m-%d %H:%M UTC')} (last: {what})",
                {
                    "failed_polls": count,
                    "outage_started_at": iso(since),
                    "last_error_kind": error_kind,
                },
            )
        )
    return tuple(events), new


def _event(
    target: TargetRef,
    now: datetime,
    key: str,
    kind: str,
    severity: Severity,
    message: str,
    details: dict[str, Any],
) -> Event:
    return Event(
        dedup_key=key,
        kind=kind,
        severity=severity,
        target=target,
        observed_at=now,
        message=message,
        details=details,
    )
