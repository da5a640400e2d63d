"""Factories that turn Settings into adapters: cloud clients, notification parts, policy.

Kept apart from the composition root (app.py) so `check`, `notify-test` and `demo` build the
same parts the daemon does, the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

from watcher.cloud import auth as cloud_auth
from watcher.cloud.client import CceClient, RequestLimiter, ResponseHook
from watcher.config import Settings, Target
from watcher.core.events import Event, TargetRef
from watcher.core.ports import PlannedDelivery, RenderedMessage
from watcher.core.silences import Silence
from watcher.logs import register_secret
from watcher.notify import routing
from watcher.notify.links import Links
from watcher.notify.templates import Renderer
from watcher.notify.url import NotifyUrl


def target_ref(target: Target) -> TargetRef:
    return target.to_ref()


def register_transient_secret(value: str) -> None:
    """The auth providers' ``on_secret``: refreshed credentials join the log redaction."""
    register_secret(value, transient=True)


def make_auth(
    settings: Settings, session: aiohttp.ClientSession, *, region: str, project_id: str
) -> cloud_auth.Auth:
    """The credential provider for one (region, project); the config has already resolved
    kind ``auto`` and checked each kind's fields are complete."""
    cred = settings.credentials
    kind = cred.effective_kind
    if kind == "aksk":
        if not (cred.access_key and cred.secret_key):
            raise ValueError("credentials.kind=aksk needs access_key and secret_key")
        token = cred.security_token.get_secret_value() if cred.security_token else None
        return cloud_auth.AkSkAuth(
            cred.access_key, cred.secret_key.get_secret_value(), token, project_id
        )
    if kind == "password":
        if not (cred.username and cred.password and cred.domain):
            raise ValueError("credentials.kind=password needs username, password and domain")
        return cloud_auth.IamPasswordAuth(
            session,
            settings.cloud.iam_endpoint_for(region),
            cred.username,
            cred.password.get_secret_value(),
            cred.domain,
            project_id=project_id,
            on_secret=register_transient_secret,
        )
    return cloud_auth.MetadataAuth(
        session,
        str(cred.metadata_endpoint).rstrip("/"),
        project_id=project_id,
        on_secret=register_transient_secret,
    )


@dataclass
class CloudClients:
    """One CceClient per (region, project), created on first use and shared by targets."""

    settings: Settings
    session: aiohttp.ClientSession
    limiter: RequestLimiter | None = None
    on_response: ResponseHook | None = None
    _clients: dict[tuple[str, str], CceClient] = field(default_factory=dict)

    def for_target(self, target: Target | TargetRef) -> CceClient:
        key = (target.region, target.project_id)
        client = self._clients.get(key)
        if client is None:
            client = CceClient(
                self.session,
                endpoint=self.settings.cloud.cce_endpoint_for(target.region),
                auth=make_auth(
                    self.settings,
                    self.session,
                    region=target.region,
                    project_id=target.project_id,
                ),
                project_id=target.project_id,
                max_body_bytes=self.settings.cloud.max_body_bytes,
                limiter=self.limiter,
                on_response=self.on_response,
            )
            self._clients[key] = client
        return client


def notify_urls(settings: Settings, extra: Sequence[str] = ()) -> list[NotifyUrl]:
    """Every configured notification URL (inline, apprise config files, ``extra``)."""
    base = settings.config_path
    return settings.notify.to_urls(base_dir=base.parent if base else None, extra=extra)


@dataclass(frozen=True)
class NotifyPlan:
    """Routing, silences and templates: everything a reload replaces at once."""

    urls: list[NotifyUrl]
    routes: list[routing.Route]
    silences: list[Silence]
    renderer: Renderer

    def plan(self, events: Sequence[Event], now: datetime) -> list[PlannedDelivery]:
        return routing.plan(events, self.urls, self.routes, self.silences, now)

    def render_for_urls(self) -> Callable[[str, Sequence[Event]], RenderedMessage]:
        return self.renderer.for_urls(self.urls)


def config_silences(settings: Settings) -> list[Silence]:
    """The config file's ``[[silences]]``, named ``config:1``, ``config:2``, ..."""
    return [s.to_silence(i) for i, s in enumerate(settings.silences, start=1)]


def notify_routes(settings: Settings) -> list[routing.Route]:
    """The configured routes as the routing module's Route objects."""
    return [r.to_route() for r in settings.notify.routes]


def notify_plan(settings: Settings, extra_urls: Sequence[str] = ()) -> NotifyPlan:
    routes = notify_routes(settings)
    return NotifyPlan(
        notify_urls(settings, extra_urls),
        routes,
        config_silences(settings),
        make_renderer(settings, routes),
    )


def make_renderer(settings: Settings, routes: Sequence[routing.Route] | None = None) -> Renderer:
    """The Renderer for the configured overrides, template_dir and links (ConfigError if
    broken)."""
    n = settings.notify
    overrides = {
        kind: {k: v for k, v in (("title", o.title), ("body", o.body)) if v is not None}
        for kind, o in n.templates.kinds.items()
    }
    links = Links(
        console_template=n.console_url or None,
        target_runbooks={t.name: t.runbook_url for t in settings.targets if t.runbook_url},
        routes=tuple(notify_routes(settings) if routes is None else routes),
    )
    return Renderer(overrides, n.templates.template_dir, links=links)
