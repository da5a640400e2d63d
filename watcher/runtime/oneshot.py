"""One-shot commands over the same parts as the daemon: `check`, `events`, `notify-test`.

`check` is the daemon's burst mode (arq's): the same poller (``poller.py``) runs each
target's jobs exactly once against a throwaway store, then prints a table and returns an
exit code for scripts and cron (0 fine or in progress, 1 a workflow failed or a pre-check
expired, 2 configuration, credential or API error).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from watcher import textsafe
from watcher.cloud.client import CceClient
from watcher.cloud.http import make_session
from watcher.config import Settings, Target, mask_url
from watcher.core import health
from watcher.core.console import workflow_url
from watcher.core.errors import WatcherError
from watcher.core.events import Event, TargetRef
from watcher.core.models import Workflow
from watcher.core.ports import Store, SystemClock
from watcher.core.projects import select
from watcher.core.silences import Silence
from watcher.core.summary import format_text, needs_attention, summarize
from watcher.core.wording import plural
from watcher.notify.sender import AppriseSender
from watcher.notify.targets import build_urls
from watcher.notify.templates import sample_event
from watcher.runtime.check_progress import CheckProgress
from watcher.runtime.poller import (
    ClusterWatch,
    TargetHealth,
    WatchContext,
    WorkflowWatch,
    api_of,
)
from watcher.runtime.wiring import CloudClients, notify_plan, target_ref
from watcher.store import STORE_FILE, open_store
from watcher.store.memory import MemoryStore


async def check(
    settings: Settings,
    *,
    as_json: bool,
    timeout_s: float | None = None,
    progress: CheckProgress | None = None,
    store: Store | None = None,
) -> tuple[int, str]:
    """Poll every target once; return (exit code, text to print).

    The daemon's poller in burst mode (arq): each target's discovery or workflow watch
    runs exactly once, against ``store`` (default: an in-memory ``MemoryStore``; `check`
    never writes the daemon's state file). ``timeout_s`` bounds the whole check (each
    request gets at most that long, too); ``progress`` hears about every attempt
    (runtime/check_progress.py).
    """
    return await _check(settings, store or MemoryStore(), as_json, timeout_s, progress)


async def _check(
    settings: Settings,
    store: Store,
    as_json: bool,
    timeout_s: float | None,
    progress: CheckProgress | None,
) -> tuple[int, str]:
    now = datetime.now(UTC)
    summaries: list[dict[str, Any]] = []
    errors: list[str] = []
    request_s = min(settings.cloud.timeout_s, timeout_s or settings.cloud.timeout_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s if timeout_s else None
    ctx = WatchContext(
        store=store,
        plan=lambda events, when: [],  # nothing is delivered: check only prints
        policy=settings.policy.to_policy(),
        poll=settings.polling.to_poll_policy(),
        clock=SystemClock(),
        on_committed=lambda events: None,
        unreachable_after=settings.polling.unreachable_after,
        max_backoff_s=settings.polling.max_backoff_s,
    )
    async with make_session(
        ca_file=settings.cloud.ca_file,
        timeout=aiohttp.ClientTimeout(total=request_s, sock_connect=min(5.0, request_s)),
    ) as session:
        clients = CloudClients(
            settings, session, on_response=progress.response if progress else None
        )
        units: list[tuple[Target, TargetRef]] = []
        for target in settings.targets:
            client = clients.for_target(target)
            try:
                async with asyncio.timeout_at(deadline):
                    units += [(target, ref) for ref in await _expand(client, target)]
            except TimeoutError:
                errors.append(
                    f"{target.name}: no answer within --timeout {timeout_s:g} s"
                    f" ({URL(client.endpoint).host})"
                )
            except WatcherError as exc:
                errors.append(f"{target.name}: {exc}")
        for target, ref in units:
            client = clients.for_target(target)
            try:
                async with asyncio.timeout_at(deadline):
                    workflows, cluster_name, error = await _check_one(
                        ctx, client, ref, target.workflow_id
                    )
            except TimeoutError:
                errors.append(
                    f"{ref.name}: no answer within --timeout {timeout_s:g} s"
                    f" ({URL(client.endpoint).host})"
                )
                continue
            if error is not None:
                errors.append(f"{ref.name}: {error}")
                continue
            summaries += [
                summarize(
                    w,
                    target=ref,
                    now=now,
                    display_name=target.display_name,
                    cluster_name=cluster_name,
                    console_url=workflow_url(
                        settings.notify.console_url or None,
                        ref.region,
                        ref.project_id,
                        ref.cluster_id,
                        w.uid,
                    ),
                )
                for w in workflows
            ]
    code = 2 if errors else (1 if any(needs_attention(s) for s in summaries) else 0)
    if as_json:
        return code, json.dumps({"workflows": summaries, "errors": errors}, indent=2)
    # Cloud strings are untrusted: one inert line each (JSON above escapes them already).
    parts = [format_text(textsafe.inert_tree(s)) for s in summaries]
    parts += [f"error: {textsafe.inert(e)}" for e in errors]
    if not summaries and not errors:
        parts.append("no workflows found")
    return code, "\n\n".join(parts)


async def _expand(client: CceClient, target: Target) -> list[TargetRef]:
    """What one target watches: itself, or each selected cluster of a project target."""
    if target.kind != "project":
        return [target_ref(target)]
    listed = await client.list_clusters(api=target.api)
    found = select(target_ref(target), target.to_selection(), listed)
    return [d.ref for d in found.values()]


async def _check_one(
    ctx: WatchContext, client: CceClient, ref: TargetRef, workflow_id: str | None
) -> tuple[list[Workflow], str | None, str | None]:
    """One round of the target's jobs: its workflows (the running ones, or else the
    newest), the cluster name, and the error that failed the round (None when it did not).
    """
    target_health = TargetHealth(ref, health.TargetHealth())
    if not workflow_id:  # a cluster: one listing answers for its workflows
        cluster = ClusterWatch(client=client, target=ref, health=target_health, keep_newest=True)
        await cluster.poll(ctx)
        if cluster.last_error is not None:
            return [], None, cluster.last_error
        running = [w.state.workflow for w in cluster.live.values() if w.state is not None]
        if not running:  # none running: the newest, as listed, is what an on-call asks about
            newest = [cluster.newest] if cluster.newest is not None else []
            return newest, await _cluster_name(client, ref), None
        return running, cluster.cluster_name or None, None
    watch = WorkflowWatch(client=client, target=ref, workflow_id=workflow_id, health=target_health)
    await watch.poll(ctx)
    if watch.state is None:  # failed, or a workflow id the cloud does not know
        return [], None, watch.last_error or "no answer"
    return [watch.state.workflow], watch.cluster_name or None, None


async def _cluster_name(client: CceClient, ref: TargetRef) -> str | None:
    try:
        return (await client.show_cluster(ref.cluster_id, api=api_of(ref))).display_name
    except WatcherError:
        return None


async def events(settings: Settings, *, limit: int, as_json: bool) -> str:
    """Recent events and each delivery's state, read from the store."""
    path = Path(settings.state_dir) / STORE_FILE
    if settings.state.backend == "sqlite" and not path.exists():
        raise WatcherError(f"no state store at {path}: has the daemon run yet?")
    # open() and events_with_deliveries() raise StoreError (path and fix) on a damaged file.
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
                            "maybe_delivered": d.maybe_delivered,
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
    safe = textsafe.inert  # stored text came from the cloud or from a remote service
    lines = []
    for row in rows:
        e = row.event
        late = " (observed late)" if e.observed_late else ""
        muted = f" (silenced by {sid})" if (sid := e.details.get("silenced_by")) else ""
        lines.append(
            f"{row.seq:>6}  {e.observed_at:%Y-%m-%d %H:%M:%S}  {safe(e.severity):<8} "
            f"{safe(e.kind):<26} {safe(e.target.name)}: {safe(e.message)}{late}{safe(muted)}"
        )
        for d in row.deliveries:
            error = f"  ({safe(d.last_error)})" if d.last_error else ""
            tries = plural(d.attempts, "attempt")
            # Attempts that got no answer in time: the service may have had it already.
            maybe = f", {d.maybe_delivered} maybe delivered" if d.maybe_delivered else ""
            lines.append(f"{'':>8}-> {safe(d.url_key)}: {safe(d.state)}, {tries}{maybe}{error}")
    return "\n".join(lines) or "no events yet"


async def notify_test(
    settings: Settings,
    extra_urls: tuple[str, ...] = (),
    event: Event | None = None,
    stored: Sequence[Silence] = (),
) -> tuple[int, str]:
    """Send a sample event; one result line per URL, by its configured name, masked.

    Without ``extra_urls`` the event goes through the configured routes and silences;
    ``extra_urls`` (``--notify``) are sent to directly, bypassing routes.
    """
    plan = notify_plan(settings)
    if event is None:
        ref = target_ref(settings.targets[0]) if settings.targets else None
        event = sample_event(ref) if ref else sample_event()
    if extra_urls:  # direct: only these URLs, every one of them
        urls = build_urls(list(extra_urls), where="--notify")
        planned = {u.key for u in urls}
    else:  # ``stored``: silences added at run time, which the daemon applies too
        urls = plan.urls
        muted_by = [
            s for s in (*plan.silences, *stored) if s.active(event.observed_at) and s.matches(event)
        ]
        planned = set() if muted_by else {d.url_key for d in plan.plan([event], event.observed_at)}
    render = plan.renderer.for_urls(urls)
    lines: list[str] = []
    ok_all = True
    with AppriseSender(urls) as sender:
        for url in urls:
            shown = f"{url.key} ({mask_url(url.url)})"
            if url.key not in planned:
                why = (
                    f"silenced by silence {muted_by[0].id}"
                    if not extra_urls and muted_by
                    else f"no route sends {event.kind} here"
                )
                lines.append(f"skipped {shown}: {why}")
                continue
            message = render(url.key, [event])
            result = await sender.send(
                url.key, title=message.title, body=message.body, severity=message.severity
            )
            ok_all &= result.ok
            lines.append(
                f"{'ok' if result.ok else 'FAILED'} {shown}"
                + (f": {result.error}" if result.error else "")
            )
    if not urls:
        return 2, "no notification URLs configured"
    if not any(url.key in planned for url in urls):  # a test that sent nothing is no pass
        lines.append("nothing was sent: no URL would receive this event")
        return 1, "\n".join(lines)
    return (0 if ok_all else 1), "\n".join(lines)
