"""`config validate --online`: one signed API call per target, and what came back.

Configuration that parses can still fail on first contact: a secret key from another
account, a project id of another region, a cluster deleted last week, a firewall. One
call per target (no retries: a wrong key must not be tried again and again, five bad
signatures lock it) tells the operator which, with the host and how long it took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import aiohttp
from yarl import URL

from watcher.cloud.client import CceClient, RetryPolicy
from watcher.cloud.http import make_session
from watcher.config import Settings, Target
from watcher.core.errors import (
    AuthError,
    ConfigError,
    CredentialError,
    NotFoundError,
    TransportError,
    WatcherError,
)
from watcher.core.projects import select
from watcher.core.wording import plural
from watcher.runtime.poller import api_of
from watcher.runtime.wiring import make_auth, target_ref

Outcome = Literal["ok", "bad credentials", "not found", "unreachable", "error"]


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: str
    host: str
    outcome: Outcome
    seconds: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def line(self) -> str:
        text = f"{self.target}: {self.outcome} ({self.host}, {self.seconds * 1000:.0f} ms)"
        return text + (f": {self.detail}" if self.detail else "")


def classify(exc: WatcherError) -> Outcome:
    if isinstance(exc, AuthError | CredentialError):
        return "bad credentials"
    if isinstance(exc, NotFoundError):
        return "not found"
    if isinstance(exc, TransportError):
        return "unreachable"
    return "error"


async def check_target(
    settings: Settings, session: aiohttp.ClientSession, target: Target
) -> TargetResult:
    """One signed call: ShowUpgradeWorkFlow for a workflow target, the list for a cluster."""
    started = time.monotonic()
    host = "?"
    try:
        endpoint = settings.cloud.cce_endpoint_for(target.region)
        host = URL(endpoint).host or endpoint
        client = CceClient(
            session,
            endpoint=endpoint,
            auth=make_auth(settings, session, region=target.region, project_id=target.project_id),
            project_id=target.project_id,
            max_body_bytes=settings.cloud.max_body_bytes,
            retry=RetryPolicy(attempts=1),
        )
        api = api_of(target_ref(target))
        if target.kind == "project":
            clusters = await client.list_clusters(api=api)
            chosen = select(target_ref(target), target.to_selection(), clusters)
            detail = f"{plural(len(clusters), 'cluster')}, {len(chosen)} selected"
        elif target.workflow_id and target.cluster_id:
            workflow = await client.show_workflow(target.cluster_id, target.workflow_id, api=api)
            detail = f"workflow phase {workflow.phase}"
        else:
            listed = await client.list_workflows(target.cluster_id or "", api=api)
            detail = f"{len(listed)} workflow{'s' if len(listed) != 1 else ''}"
    except ConfigError as exc:
        return TargetResult(target.name, host, "error", time.monotonic() - started, str(exc))
    except WatcherError as exc:
        return TargetResult(target.name, host, classify(exc), time.monotonic() - started, str(exc))
    return TargetResult(target.name, host, "ok", time.monotonic() - started, detail)


async def check_targets(settings: Settings) -> list[TargetResult]:
    """Every target, one after another (a handful of calls; no rate limit is needed)."""
    timeout = aiohttp.ClientTimeout(
        total=settings.cloud.timeout_s, sock_connect=min(5.0, settings.cloud.timeout_s)
    )
    async with make_session(ca_file=settings.cloud.ca_file, timeout=timeout) as session:
        return [await check_target(settings, session, t) for t in settings.targets]
