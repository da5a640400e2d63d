"""Routing: which events go to which notification URL (pure, no I/O).

``plan()`` runs at commit time, inside the poll, so the deliveries are written in the
same transaction as the events (SPEC.md section 4). It receives one workflow's events
from one poll and returns one PlannedDelivery per URL that gets any of them: the unit
of "one message per workflow per poll per URL".

Matching follows apprise's tag model so that a URL's tags mean the same thing here and
in an apprise config file: a route selects the URLs that carry any of its tags, a route
without tags selects every URL, and a URL tagged ``always`` is selected by every route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from watcher.core.events import Event, Kind, Severity
from watcher.core.ports import PlannedDelivery
from watcher.core.silences import Silence, any_glob, silenced
from watcher.notify.url import NotifyUrl

ALWAYS_TAG = "always"


@dataclass(frozen=True, slots=True)
class Route:
    """Send events matching (kinds, min_severity, targets, labels) to URLs with ``tags``.

    ``kinds`` and ``targets`` are globs (``task.*``, ``prod-*``); ``labels`` must all be
    present on the event's target, values compared as globs; ``exclude_kinds`` removes
    kinds the broad globs would catch.
    """

    kinds: tuple[str, ...] = ("*",)
    min_severity: Severity = Severity.INFO
    targets: tuple[str, ...] = ("*",)
    labels: Mapping[str, str] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    exclude_kinds: tuple[str, ...] = ()
    runbook_url: str | None = None  # shown in the messages this route delivers

    def matches(self, event: Event) -> bool:
        """True if this route takes ``event`` (whatever the URLs)."""
        if not any_glob(self.kinds, event.kind) or any_glob(self.exclude_kinds, event.kind):
            return False
        if event.severity.rank < self.min_severity.rank:
            return False
        if not any_glob(self.targets, event.target.name):
            return False
        labels = event.target.labels
        return all(
            key in labels and fnmatchcase(labels[key], value) for key, value in self.labels.items()
        )

    def selects(self, url: NotifyUrl) -> bool:
        """True if this route delivers to ``url`` (apprise tag semantics, OR of tags)."""
        if not self.tags or ALWAYS_TAG in url.tags:
            return True
        return not {t.lower() for t in self.tags}.isdisjoint(url.tags)


# SPEC.md section 4: everything but task.queued, to every URL.
DEFAULT_ROUTE = Route(exclude_kinds=(str(Kind.TASK_QUEUED),))


def plan(
    events: Sequence[Event],
    urls: Sequence[NotifyUrl],
    routes: Sequence[Route],
    silences: Sequence[Silence],
    now: datetime,
) -> list[PlannedDelivery]:
    """One PlannedDelivery per URL that receives any of ``events``, in URL order.

    ``events`` are one workflow's events from one poll; each delivery lists the dedup
    keys routed to its URL in event order, each key once even when several routes match.
    Silenced events go nowhere (the store still records them). With no routes, the
    default route applies.
    """
    active_routes = list(routes) if routes else [DEFAULT_ROUTE]
    live = [e for e in events if not silenced(e, silences, now)]
    matching = [(e, [r for r in active_routes if r.matches(e)]) for e in live]
    deliveries: list[PlannedDelivery] = []
    for url in urls:
        keys: list[str] = []
        seen: set[str] = set()
        for event, event_routes in matching:
            if event.dedup_key in seen:
                continue
            if any(route.selects(url) for route in event_routes):
                keys.append(event.dedup_key)
                seen.add(event.dedup_key)
        if keys:
            deliveries.append(PlannedDelivery(url_key=url.key, event_keys=tuple(keys)))
    return deliveries
