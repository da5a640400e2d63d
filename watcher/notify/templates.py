"""Rendering events into a notification's title and body (Jinja2, sandboxed).

One message per workflow per poll per URL: ``render()`` turns a small timeline of events
into one RenderedMessage titled by the most severe of them. Two default flavors ship as
package files (``templates/{chat,email}_{title,body}.j2``): compact for chat, fuller for
e-mail. Users may override the title and body per event kind in the config; overrides are
compiled once at load, so a syntax error is a config error, and an override that fails at
render time falls back to the default with a warning instead of losing the notification.

The output is plain TEXT (autoescape off): the sender passes ``NotifyFormat.TEXT`` and
apprise escapes it for HTML services. API-derived strings are still untrusted, so every
printed value has its control characters removed (no terminal escapes, no bidi tricks,
no fake header lines in titles).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import jinja2
import structlog
from jinja2.sandbox import SandboxedEnvironment

from watcher.core.errors import ConfigError
from watcher.core.events import Event, Kind, Severity, TargetRef, most_severe
from watcher.core.ports import RenderedMessage
from watcher.notify.targets import FLAVORS, Flavor, NotifyUrl

log = structlog.get_logger(__name__)
# One message stays readable (and cheap to render) whatever one poll found: a workflow of
# thousands of points lists the first events and says "and N more".
MAX_EVENTS_SHOWN = 50
MAX_ITEMS_SHOWN = 50

MAX_TITLE_LEN = 250  # apprise's title limit for most services (LIBRARIES.md 1.4)
PARTS = ("title", "body")

# C0/C1 controls except tab and newline, DEL, and the bidi embedding/override/isolate marks.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")
_BLANK_RUN = re.compile(r"\n{3,}")


def strip_controls(text: str) -> str:
    """``text`` without control characters (newlines and tabs are kept; CR is dropped)."""
    return _CONTROL.sub("", text)


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str):
        return strip_controls(value)
    return value


def fmt_datetime(value: datetime | None) -> str:
    """``2024-05-01 10:00:00 UTC`` (empty for None)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_time(value: datetime | None) -> str:
    """``10:00 UTC`` (empty for None)."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%H:%M UTC")


def fmt_duration(seconds: float | timedelta | None) -> str:
    """``1h 02m``, ``4m 10s``, ``12s`` (empty for None)."""
    if seconds is None:
        return ""
    total = int(seconds.total_seconds() if isinstance(seconds, timedelta) else seconds)
    total = max(0, total)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def event_time(event: Event) -> datetime:
    """The cloud's time of the change when known, otherwise when it was observed."""
    if event.new_status in {"Running", "Queuing"} and event.started_at:
        return event.started_at
    return event.ended_at or event.started_at or event.observed_at


def failed_items(event: Event) -> list[str]:
    """The failed pre-check items an event carries in ``details["failed_items"]``.

    Items are strings or mappings with ``name`` and optional ``node``/``message``.
    """
    raw = event.details.get("failed_items") if event.details else None
    if not isinstance(raw, list | tuple):
        return []
    out: list[str] = []
    for item in raw[:MAX_ITEMS_SHOWN]:
        if isinstance(item, Mapping):
            name = str(item.get("name") or item.get("kind") or "?")
            node = item.get("node")
            message = item.get("message")
            text = f"{name} on {node}" if node else name
            if message:
                text = f"{text}: {message}"
            out.append(text)
        elif item is not None:
            out.append(str(item))
    if len(raw) > MAX_ITEMS_SHOWN:
        out.append(f"and {len(raw) - MAX_ITEMS_SHOWN} more")
    return out


def headline(events: Sequence[Event]) -> Event:
    """The event that titles the message: the first of the most severe ones."""
    loudest = most_severe(tuple(events))
    return next(e for e in events if e.severity == loudest)


def _first(events: Sequence[Event], attr: str) -> Any:
    return next((getattr(e, attr) for e in events if getattr(e, attr)), None)


def build_context(events: Sequence[Event], flavor: Flavor) -> dict[str, Any]:
    """The variables every template sees; ``events`` holds at most ``MAX_EVENTS_SHOWN``
    (oldest first), ``more`` says how many were left out, ``event_count`` is the total."""
    head = headline(events)
    target = head.target
    shown = list(events[:MAX_EVENTS_SHOWN])
    if head not in shown:  # the event that titles the message is always listed
        shown[-1] = head
    return {
        "events": shown,
        "more": len(events) - len(shown),
        "event_count": len(events),
        "event": head,
        "kind": head.kind,
        "severity": str(most_severe(tuple(events))),
        "target": target,
        "labels": dict(target.labels),
        "cluster": _first(events, "cluster_name") or target.name,
        "workflow_id": _first(events, "workflow_id"),
        "from_version": _first(events, "from_version"),
        "to_version": _first(events, "to_version"),
        "flavor": flavor,
    }


def make_environment(template_dir: str | Path | None = None) -> SandboxedEnvironment:
    """A sandboxed, non-escaping environment with the watcher's filters and helpers.

    ``template_dir`` may hold files with the default names to replace the defaults.
    """
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(template_dir)))
    loaders.append(jinja2.PackageLoader("watcher.notify", "templates"))
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=False,  # TEXT output; apprise escapes it for HTML services
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=_finalize,
    )
    env.filters.update(
        datetime=fmt_datetime, time=fmt_time, duration=fmt_duration, oneline=_oneline
    )
    env.globals.update(failed_items=failed_items, event_time=event_time)
    return env


def _oneline(text: Any) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True, slots=True)
class _Override:
    title: jinja2.Template | None
    body: jinja2.Template | None


class Renderer:
    """Renders one workflow's events into a message for a URL flavor."""

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, str]] | None = None,
        template_dir: str | Path | None = None,
        *,
        where: str = "notify.templates",
    ) -> None:
        self._env = make_environment(template_dir)
        problems: list[str] = []
        self._defaults: dict[tuple[Flavor, str], jinja2.Template] = {}
        for flavor in FLAVORS:
            for part in PARTS:
                name = f"{flavor}_{part}.j2"
                try:
                    self._defaults[(flavor, part)] = self._env.get_template(name)
                except jinja2.TemplateError as exc:
                    problems.append(f"{where}: template file {name}: {_describe(exc)}")
        self._overrides: dict[str, _Override] = {}
        for kind, parts in (overrides or {}).items():
            compiled = self._compile_override(kind, parts, where, problems)
            if compiled is not None:
                self._overrides[kind] = compiled
        if problems:
            raise ConfigError(problems)

    def _compile_override(
        self, kind: str, parts: Mapping[str, str], where: str, problems: list[str]
    ) -> _Override | None:
        if not isinstance(parts, Mapping):
            problems.append(f"{where}.{kind}: expected a table with 'title' and/or 'body'")
            return None
        unknown = sorted(str(k) for k in parts if k not in PARTS)
        if unknown:
            problems.append(f"{where}.{kind}: unknown keys {', '.join(unknown)}")
        compiled: dict[str, jinja2.Template | None] = {"title": None, "body": None}
        for part in PARTS:
            source = parts.get(part)
            if source is None:
                continue
            if not isinstance(source, str):
                problems.append(f"{where}.{kind}.{part}: expected a template string")
                continue
            try:
                compiled[part] = self._env.from_string(source)
            except jinja2.TemplateError as exc:
                problems.append(f"{where}.{kind}.{part}: template error: {_describe(exc)}")
        return _Override(title=compiled["title"], body=compiled["body"])

    def _override_for(self, kind: str) -> _Override | None:
        found = self._overrides.get(kind)
        if found is not None:
            return found
        for pattern, override in self._overrides.items():
            if fnmatchcase(kind, pattern):
                return override
        return None

    def _render_part(
        self, part: str, flavor: Flavor, context: dict[str, Any], override: _Override | None
    ) -> str:
        template = getattr(override, part) if override is not None else None
        if template is not None:
            try:
                return str(template.render(context))
            except Exception as exc:  # any user-template failure falls back to the default
                log.warning(
                    "notify.template_failed",
                    kind=context["kind"],
                    part=part,
                    error=_describe(exc),
                )
        return str(self._defaults[(flavor, part)].render(context))

    def render(self, events: Sequence[Event], flavor: Flavor = "chat") -> RenderedMessage:
        """One message for ``events`` (one workflow, one poll), titled by the loudest."""
        if not events:
            raise ValueError("render() needs at least one event")
        if flavor not in FLAVORS:
            flavor = "chat"
        context = build_context(events, flavor)
        override = self._override_for(context["kind"])
        title = _oneline(strip_controls(self._render_part("title", flavor, context, override)))
        if len(title) > MAX_TITLE_LEN:
            title = title[: MAX_TITLE_LEN - 1] + "…"
        body = strip_controls(self._render_part("body", flavor, context, override))
        body = _BLANK_RUN.sub("\n\n", body).strip("\n")
        return RenderedMessage(
            title=title,
            body=body,
            severity=most_severe(tuple(events)),
            extra={"kind": context["kind"], "event_count": len(events), "flavor": flavor},
        )

    def for_urls(
        self, urls: Iterable[NotifyUrl]
    ) -> Callable[[str, Sequence[Event]], RenderedMessage]:
        """The dispatcher's ``render(url_key, events)``: each URL gets its flavor."""
        flavors: dict[str, Flavor] = {url.key: url.flavor for url in urls}

        def render(url_key: str, events: Sequence[Event]) -> RenderedMessage:
            return self.render(events, flavors.get(url_key, "chat"))

        return render


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.message} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def sample_event(target: TargetRef | None = None, now: datetime | None = None) -> Event:
    """A realistic ``watcher.test`` event for ``notify-test`` (no cloud call needed)."""
    now = now or datetime.now(UTC)
    target = target or TargetRef(
        name="example-cluster",
        region="ap-southeast-1",
        project_id="0123456789abcdef0123456789abcdef",
        cluster_id="00000000-0000-0000-0000-000000000000",
        labels={"env": "test"},
    )
    return Event(
        dedup_key=f"watcher.test:{target.name}:{now.isoformat()}",
        kind=str(Kind.TEST),
        severity=Severity.INFO,
        target=target,
        observed_at=now,
        message="Test notification from cce-upgrade-watcher: delivery works",
        workflow_id="test-workflow",
        cluster_name=target.name,
        from_version="v1.29",
        to_version="v1.30",
        task_type="PreCheck",
        task_id="test-task",
        old_status="Running",
        new_status="Success",
        started_at=now - timedelta(minutes=4, seconds=10),
        ended_at=now,
        details={"test": True},
    )
