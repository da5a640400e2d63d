"""One-shot commands over the same parts as the daemon: `check`, `events`, `notify-test`.

`check` is the daemon's burst mode: one poll round, a table, an exit code for scripts and
cron (0 fine or in progress, 1 a workflow failed or a pre-check expired, 2 configuration,
credential or API error).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from watcher.cloud.http import make_session
from watcher.config import Settings
from watcher.core.errors import WatcherError
from watcher.core.models import TERMINAL_PHASES, Workflow
from watcher.core.ports import SystemClock
from watcher.core.summary import format_text, needs_attention, summarize
from watcher.notify.sender import AppriseSender
from watcher.notify.templates import sample_event
from watcher.runtime.daemon import STORE_FILE
from watcher.runtime.watch import api_of
from watcher.runtime.wiring import CloudClients, notify_plan, target_ref
from watcher.store import open_store


async def check(settings: Settings, *, as_json: bool) -> tuple[int, str]:
    """Poll every target once; return (exit code, text to print)."""
    now = datetime.now(UTC)
    summaries: list[dict[str, Any]] = []
    errors: list[str] = []
    async with make_session(
        ca_file=settings.cloud.ca_file,
        timeout=aiohttp.ClientTimeout(total=settings.cloud.timeout_s),
    ) as session:
        clients = CloudClients(settings, session)
        for target in settings.targets:
            ref = target_ref(target)
            client = clients.for_target(target)
            api = api_of(ref)
            try:
                if target.workflow_id:
                    workflows: tuple[Workflow, ...] = (
                        await client.show_workflow(target.cluster_id, target.workflow_id, api=api),
                    )
                else:
                    listed = await client.list_workflows(target.cluster_id, api=api)
                    # The running ones, or else the newest: what an on-call engineer asks.
                    workflows = tuple(w for w in listed if w.phase not in TERMINAL_PHASES)
                    workflows = workflows or listed[:1]
                try:
                    cluster_name = (await client.show_cluster(target.cluster_id, api=api)).name
                except WatcherError:
                    cluster_name = None
            except WatcherError as exc:
                errors.append(f"{target.name}: {exc}")
                continue
            summaries += [
                summarize(
                    w,
                    target=ref,
                    now=now,
                    display_name=target.display_name,
                    cluster_name=cluster_name,
                )
                for w in workflows
            ]
    code = 2 if errors else (1 if any(needs_attention(s) for s in summaries) else 0)
    if as_json:
        return code, json.dumps({"workflows": summaries, "errors": errors}, indent=2)
    parts = [format_text(s) for s in summaries] + [f"error: {e}" for e in errors]
    if not summaries and not errors:
        parts.append("no workflows found")
    return code, "\n\n".join(parts)


async def events(settings: Settings, *, limit: int, as_json: bool) -> str:
    """Recent events and each delivery's state, read from the store."""
    path = Path(settings.state_dir) / STORE_FILE
    if settings.state.backend == "sqlite" and not path.exists():
        raise WatcherError(f"no state store at {path}: has the daemon run yet?")
    store = await open_store(settings, SystemClock())
    try:
        rows = await store.events_with_deliveries(limit)
    finally:
        await store.close()
    if as_json:
        return json.dumps(
            [
                {
                    "seq": row.seq,
                    "event": row.event.to_dict(),
                    "deliveries": [
                        {
                            "url": d.url_key,
                            "state": d.state,
                            "attempts": d.attempts,
                            "last_error": d.last_error,
                            "sent_at": d.sent_at.isoformat() if d.sent_at else None,
                        }
                        for d in row.deliveries
                    ],
                }
                for row in rows
            ],
            indent=2,
        )
    lines = []
    for row in rows:
        e = row.event
        late = " (observed late)" if e.observed_late else ""
        lines.append(
            f"{row.seq:>6}  {e.observed_at:%Y-%m-%d %H:%M:%S}  {e.severity:<8} "
            f"{e.kind:<26} {e.target.name}: {e.message}{late}"
        )
        for d in row.deliveries:
            error = f"  ({d.last_error})" if d.last_error else ""
            lines.append(f"{'':>8}-> {d.url_key}: {d.state}, {d.attempts} attempts{error}")
    return "\n".join(lines) or "no events yet"


async def notify_test(settings: Settings, extra_urls: tuple[str, ...] = ()) -> tuple[int, str]:
    """Send a sample event through the configured routes; one result line per URL."""
    plan = notify_plan(settings, extra_urls)
    ref = target_ref(settings.targets[0]) if settings.targets else None
    event = sample_event(ref) if ref else sample_event()
    planned = {d.url_key for d in plan.plan([event], event.observed_at)}
    render = plan.render_for_urls()
    lines: list[str] = []
    ok_all = True
    with AppriseSender(plan.urls) as sender:
        for url in plan.urls:
            if url.key not in planned:
                lines.append(f"skipped {url.display}: no route sends {event.kind} here")
                continue
            message = render(url.key, [event])
            result = await sender.send(
                url.key, title=message.title, body=message.body, severity=message.severity
            )
            ok_all &= result.ok
            lines.append(
                f"{'ok' if result.ok else 'FAILED'} {url.display}"
                + (f": {result.error}" if result.error else "")
            )
    if not plan.urls:
        return 2, "no notification URLs configured"
    return (0 if ok_all else 1), "\n".join(lines)
