"""Which routes take an event and which URLs receive it: `routes test` and `notify-test`.

Uses the production routing (watcher.notify.routing through wiring.notify_plan), so what it
prints is what the daemon would do, like `amtool config routes test`. The event is a sample
with the asked kind, severity, target and labels; a configured target lends its identity.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from watcher.config import Settings, mask_url
from watcher.core.errors import ConfigError
from watcher.core.events import Event, Kind, Severity, TargetRef
from watcher.core.silences import Silence
from watcher.notify import routing
from watcher.notify.templates import sample_event
from watcher.runtime.wiring import NotifyPlan, target_ref

KINDS = tuple(str(k) for k in Kind)
SEVERITIES = tuple(str(s) for s in Severity)


def routed_event(
    settings: Settings,
    *,
    kind: str | None = None,
    severity: str | None = None,
    target: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Event:
    """A sample event shaped as asked. Unknown kinds or target names are a ConfigError."""
    if kind is not None and kind not in KINDS:
        raise ConfigError([f"--kind: unknown event kind {kind!r} (kinds: {', '.join(KINDS)})"])
    ref: TargetRef | None = None
    if target is not None:
        configured = settings.target(target)
        ref = (
            target_ref(configured)
            if configured
            else dataclasses.replace(sample_event().target, name=target, labels={})
        )
    elif settings.targets:
        ref = target_ref(settings.targets[0])
    event = sample_event(ref) if ref else sample_event()
    if labels:
        merged = {**event.target.labels, **labels}
        event = dataclasses.replace(event, target=dataclasses.replace(event.target, labels=merged))
    if kind is not None:
        key = f"{kind}:{event.target.name}:{event.observed_at.isoformat()}"
        event = dataclasses.replace(event, kind=kind, dedup_key=key)
    if severity is not None:
        event = dataclasses.replace(event, severity=Severity(severity))
    return event


def explain(
    settings: Settings,
    plan: NotifyPlan,
    event: Event,
    stored: Sequence[Silence] = (),
) -> tuple[list[str], list[str]]:
    """(lines to print, keys of the URLs that would receive ``event``); ``stored`` are the
    silences added at run time (`silence add`, the API), which mute as config ones do."""
    now = datetime.now(UTC)
    names = [r.name or f"routes[{i}]" for i, r in enumerate(settings.notify.routes)]
    routes = list(zip(names, plan.routes, strict=True)) or [("default", routing.DEFAULT_ROUTE)]
    t = event.target
    labels = ",".join(f"{k}={v}" for k, v in sorted(t.labels.items())) or "none"
    lines = [f"event: {event.kind} severity={event.severity} target={t.name} labels={labels}"]
    muted = [i for i, s in enumerate(plan.silences) if s.active(now) and s.matches(event)]
    for index in muted:
        lines.append(f"silenced by silences[{index}]: nothing is sent")
    for silence in stored:
        if silence.active(now) and silence.matches(event):
            muted.append(-1)
            lines.append(
                f"silenced by silence {silence.id} ({silence.creator or '-'}: {silence.comment})"
                ": nothing is sent"
            )
    matching = [(name, r) for name, r in routes if r.matches(event)]
    for name, route in routes:
        lines.append(f"route {name}: {'matches' if route.matches(event) else 'no match'}")
    receivers: list[str] = []
    for url in plan.urls:
        via = [name for name, r in matching if r.selects(url)]
        if via and not muted:
            receivers.append(url.key)
            lines.append(f"  -> {url.key} ({mask_url(url.url)}) via {', '.join(via)}")
    if not receivers:
        lines.append("no URL would receive this event")
    return lines, receivers


def stored_silences(settings: Settings) -> list[Silence]:
    """The silences in force in the state store (added by `silence add` or the API): the
    daemon applies them, so a route test that left them out would promise a delivery."""
    from watcher.core.ports import SystemClock  # noqa: PLC0415
    from watcher.store import STORE_FILE, open_store  # noqa: PLC0415

    if (
        settings.state.backend != "postgres"
        and not (Path(settings.state_dir) / STORE_FILE).exists()
    ):
        return []  # no daemon has run here yet: nothing stored (and no file is created)

    async def run() -> list[Silence]:
        store = await open_store(settings, SystemClock())
        try:
            return await store.list_silences(active_at=datetime.now(UTC))
        finally:
            await store.close()

    return asyncio.run(run())
