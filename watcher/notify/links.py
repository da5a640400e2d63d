"""Where a message points the reader: the workflow in the CCE console, and a runbook.

The console link is derived from region, project and cluster through a configurable URL
template (other Huawei-based clouds have other consoles); a runbook URL may be set per
target and per route (the route's wins for the URLs it selects). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from watcher.core.console import DEFAULT_CONSOLE_URL
from watcher.core.events import Event
from watcher.notify.routing import Route
from watcher.notify.url import NotifyUrl


@dataclass(frozen=True, slots=True)
class Links:
    """Console template plus runbooks per target name and per route."""

    console_template: str | None = DEFAULT_CONSOLE_URL
    target_runbooks: Mapping[str, str] = field(default_factory=dict)
    routes: Sequence[Route] = ()

    def runbook(self, events: Sequence[Event], url: NotifyUrl | None) -> str | None:
        """The first matching route's runbook for this URL, else the target's."""
        if url is not None:
            for route in self.routes:
                if (
                    route.runbook_url
                    and route.selects(url)
                    and any(route.matches(e) for e in events)
                ):
                    return route.runbook_url
        return self.target_runbooks.get(events[0].target.name) if events else None
