"""Rendering events into a notification's title and body (Jinja2, sandboxed).

One message per workflow per poll per URL: ``render()`` turns a small timeline of events
into one RenderedMessage titled by the most severe of them. Two default flavors ship as
package files (``templates/{chat,email}_{title,body}.j2``): compact for chat, fuller for
e-mail. Users may override the title and body per event kind in the config, or replace the
defaults with files of the same names in ``template_dir``. Everything is compiled once at
load (a syntax error is a config error), ``check()`` renders every template against sample
events of every kind for ``config validate``, and a template that still fails at send time
falls back (override, then template_dir file, then built-in) with a warning: a broken
template never costs a notification.

The output is plain TEXT (autoescape off): the sender passes ``NotifyFormat.TEXT`` and
apprise escapes it for HTML services. API-derived strings are still untrusted, so every
printed value has its control characters removed (no terminal escapes, no bidi tricks,
no fake header lines in titles).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import jinja2
import structlog
from jinja2.sandbox import SandboxedEnvironment

from watcher import textsafe
from watcher.core import headline as precedence
from watcher.core.advice import item_text
from watcher.core.console import console_url
from watcher.core.errors import ConfigError
from watcher.core.events import Event, Kind, Severity, TargetRef
from watcher.core.ports import RenderedMessage
from watcher.core.wording import format_duration, late_note, line_time
from watcher.notify.links import Links
from watcher.notify.url import FLAVORS, Flavor, NotifyUrl

log = structlog.get_logger(__name__)
# One message stays readable (and cheap to render) whatever one poll found: a workflow of
# thousands of points lists the first events and says "and N more".
MAX_EVENTS_SHOWN = 50
MAX_ITEMS_SHOWN = 50

MAX_TITLE_LEN = 250  # apprise's title limit for most services (LIBRARIES.md 1.4)
# The same holds for the size of what one poll found: a pre-check item's message or a name
# can be megabytes (the cloud's body cap is 4 MB). Each interpolated value and the whole
# body are cut, saying so: a service refuses an oversized message (Slack: 40k characters),
# which would otherwise be retried until dead, and rendering it would block the loop.
MAX_VALUE_LEN = 2_000
MAX_BODY_LEN = 16_000
PARTS = ("title", "body")

_BLANK_RUN = re.compile(r"\n{3,}")


def strip_controls(text: str) -> str:
    """``text`` made inert (watcher.textsafe); newlines and tabs are kept, CR is dropped."""
    return textsafe.inert(text, multiline=True)


def _finalize(value: Any) -> Any:
    # Every interpolated value is one inert line: a cluster name holding "\nSubject: x"
    # cannot forge a line (or a header-like line in an e-mail body).
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    return textsafe.inert(_cut(str(value), MAX_VALUE_LEN))


def _cut(text: str, limit: int) -> str:
    """``text`` at most about ``limit`` characters, ending with how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


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
    """The one duration formatter (watcher.core.wording.format_duration)."""
    return format_duration(seconds)


def event_time(event: Event) -> datetime:
    """When the line's fact happened (watcher.core.wording.line_time)."""
    return line_time(event)


def failed_items(event: Event) -> list[str]:
    """The failed pre-check items an event carries in ``details["failed_items"]``.

    Items are strings or mappings with ``name`` and optional ``node``/``message``.
    """
    raw = event.details.get("failed_items") if event.details else None
    if not isinstance(raw, list | tuple):
        return []
    out: list[str] = []
    for item in raw[:MAX_ITEMS_SHOWN]:
        if isinstance(item, Mapping):  # each field cut first: a 4 MB message costs nothing
            fields = {
                k: _cut(v, MAX_VALUE_LEN) if isinstance(v, str) else v for k, v in item.items()
            }
            out.append(item_text(fields))
        elif item is not None:
            out.append(_cut(str(item), MAX_VALUE_LEN))
    if len(raw) > MAX_ITEMS_SHOWN:
        out.append(f"and {len(raw) - MAX_ITEMS_SHOWN} more")
    return out


def headline(events: Sequence[Event]) -> Event:
    """The event that titles the message (watcher.core.headline holds the precedence)."""
    return precedence.headline(events)


def next_step(events: Sequence[Event]) -> str | None:
    """What to do next: the headline's advice, else the latest event's that has one."""
    head = headline(events)
    for event in (head, *reversed(events)):
        step = event.details.get("next_step") if event.details else None
        if step:
            return str(step)
    return None


def _first(events: Sequence[Event], attr: str) -> Any:
    return next((getattr(e, attr) for e in events if getattr(e, attr)), None)


def build_context(
    events: Sequence[Event],
    flavor: Flavor,
    links: Links | None = None,
    url: NotifyUrl | None = None,
) -> dict[str, Any]:
    """The variables every template sees; ``events`` holds at most ``MAX_EVENTS_SHOWN``
    (oldest first), ``more`` says how many were left out, ``event_count`` is the total."""
    head = headline(events)
    target = head.target
    links = links or Links()
    # A timeline reads in time order: the engine emits a poll's events rule by rule (a task
    # seen started and paused in one poll came out "paused" first).
    events = sorted(events, key=line_time)
    shown = list(events[:MAX_EVENTS_SHOWN])
    if head not in shown:  # the event that titles the message is always listed
        shown[-1] = head
    # Chat: the title already says the headline; it is not repeated as the first line.
    rest = shown[1:] if shown[0] is head else shown
    return {
        "events": shown,
        "more": len(events) - len(shown),
        "event_count": len(events),
        "event": head,
        "rest": rest,
        "kind": head.kind,
        "severity": str(head.severity),
        "level": "critical" if precedence.is_critical(head) else str(head.severity),
        "when": line_time(head),
        "next_step": next_step(events),
        "console_url": console_url(links.console_template, head) if head.workflow_id else None,
        "runbook_url": links.runbook(events, url),
        "target": target,
        "labels": dict(target.labels),
        "cluster": _first(events, "cluster_name") or target.name,
        "workflow_id": _first(events, "workflow_id"),
        "from_version": _first(events, "from_version"),
        "to_version": _first(events, "to_version"),
        "flavor": flavor,
        # "acknowledged by NAME: note" when an operator acknowledged the workflow
        # (watcher.core.acks); the first message after it says so.
        "acknowledged": next(
            (a["text"] for e in events if isinstance(a := e.details.get("acknowledged"), dict)),
            None,
        ),
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
    env.globals.update(failed_items=failed_items, event_time=event_time, late_note=late_note)
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
        links: Links | None = None,
    ) -> None:
        self._links = links or Links()
        self._env = make_environment(template_dir)
        self._where = where
        problems: list[str] = []
        # The package's own templates: the last resort when a user's template fails.
        builtin_env = make_environment(None)
        self._builtin: dict[tuple[Flavor, str], jinja2.Template] = {}
        self._defaults: dict[tuple[Flavor, str], jinja2.Template] = {}
        for flavor in FLAVORS:
            for part in PARTS:
                name = f"{flavor}_{part}.j2"
                self._builtin[(flavor, part)] = builtin_env.get_template(name)
                try:
                    self._defaults[(flavor, part)] = self._env.get_template(name)
                except jinja2.TemplateError as exc:
                    problems.append(
                        f"{where}: template file {_file_of(exc, name)}: {_describe(exc)}"
                    )
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

    def _candidates(
        self, part: str, flavor: Flavor, kind: str, override: _Override | None
    ) -> list[tuple[str, jinja2.Template]]:
        """The templates to try for one part, in order, each with a label for messages.

        A user's override, then the default (a ``template_dir`` file when there is one),
        then the built-in template, which is never skipped.
        """
        found: list[tuple[str, jinja2.Template]] = []
        template = getattr(override, part) if override is not None else None
        if template is not None:
            found.append((f"{self._where}.{self._pattern_for(kind)}.{part}", template))
        default = self._defaults[(flavor, part)]
        builtin = self._builtin[(flavor, part)]
        if default is not builtin and default.filename != builtin.filename:
            found.append((f"template file {default.filename}", default))
        found.append((f"built-in template {flavor}_{part}.j2", builtin))
        return found

    def _pattern_for(self, kind: str) -> str:
        if kind in self._overrides:
            return kind
        return next((p for p in self._overrides if fnmatchcase(kind, p)), kind)

    def _render_part(
        self, part: str, flavor: Flavor, context: dict[str, Any], override: _Override | None
    ) -> str:
        *users, (_, builtin) = self._candidates(part, flavor, context["kind"], override)
        for label, template in users:
            try:
                return str(template.render(context))
            except Exception as exc:  # any user-template failure falls back, never loses
                log.warning(
                    "notify.template_failed",
                    template=label,
                    kind=context["kind"],
                    part=part,
                    error=_describe(exc, template),
                    fallback="next template",
                )
        return str(builtin.render(context))

    def check(self) -> list[str]:
        """Render every configured template against sample events of every kind.

        One line per broken template (its override key or file, and the first error), for
        ``config validate``; at send time the same failure would fall back to the built-in.
        """
        problems: dict[str, str] = {}
        for events in sample_timelines():
            kind = headline(events).kind
            override = self._override_for(kind)
            for flavor in FLAVORS:
                context = build_context(events, flavor)
                for part in PARTS:
                    for label, template in self._candidates(part, flavor, kind, override):
                        if label in problems:
                            continue
                        try:
                            template.render(context)
                        except Exception as exc:  # reported, not raised: list them all
                            problems[label] = f"{label}: {_describe(exc, template)} (kind {kind})"
        return list(problems.values())

    def render(
        self, events: Sequence[Event], flavor: Flavor = "chat", url: NotifyUrl | None = None
    ) -> RenderedMessage:
        """One message for ``events`` (one workflow, one poll), titled by its headline."""
        if not events:
            raise ValueError("render() needs at least one event")
        if flavor not in FLAVORS:
            flavor = "chat"
        context = build_context(events, flavor, self._links, url)
        override = self._override_for(context["kind"])
        title = self._render_part("title", flavor, context, override)
        title = _oneline(strip_controls(_cut(title, MAX_BODY_LEN)))
        if len(title) > MAX_TITLE_LEN:
            title = title[: MAX_TITLE_LEN - 1] + "…"
        body = self._render_part("body", flavor, context, override)
        body = strip_controls(_cut(body, MAX_BODY_LEN))
        body = _BLANK_RUN.sub("\n\n", body).strip("\n")
        return RenderedMessage(
            title=title,
            body=body,
            severity=headline(events).severity,
            extra={"kind": context["kind"], "event_count": len(events), "flavor": flavor},
        )

    def for_urls(
        self, urls: Iterable[NotifyUrl]
    ) -> Callable[[str, Sequence[Event]], RenderedMessage]:
        """The dispatcher's ``render(url_key, events)``: each URL gets its flavor."""
        by_key: dict[str, NotifyUrl] = {url.key: url for url in urls}

        def render(url_key: str, events: Sequence[Event]) -> RenderedMessage:
            url = by_key.get(url_key)
            return self.render(events, url.flavor if url else "chat", url)

        return render


def _describe(exc: BaseException, template: jinja2.Template | None = None) -> str:
    """One line: the error and, when known, the template line it happened on."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"{exc.message} (line {exc.lineno})"
    text = textsafe.inert(f"{type(exc).__name__}: {exc}")
    line = _template_line(exc, template)
    return f"{text} (line {line})" if line else text


def _template_line(exc: BaseException, template: jinja2.Template | None) -> int | None:
    """The template line of a render error: Jinja rewrites its traceback frames so that
    they carry the template's file name (``<template>`` for strings) and line."""
    if template is None:
        return None
    names = {template.filename or "<template>", "<template>"}
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in names:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _file_of(exc: jinja2.TemplateError, name: str) -> str:
    return getattr(exc, "filename", None) or name


def sample_timelines() -> list[list[Event]]:
    """Sample events of every kind, full and sparse, alone and after another event.

    The sparse one has only the required fields (a template must cope with None); the
    full one carries failed check items, an expiry and a late observation.
    """
    base = sample_event(now=datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    out: list[list[Event]] = []
    for kind in Kind:
        severity = Severity.FAILURE if "fail" in kind or "unreach" in kind else Severity.WARNING
        full = replace(
            base,
            kind=str(kind),
            severity=severity,
            dedup_key=f"sample:{kind}",
            expires_at=base.observed_at + timedelta(minutes=30),
            late_since=base.observed_at - timedelta(minutes=5),
            details={
                "failed_items": [
                    {"name": "NodeOSCheck", "node": "192.168.0.21", "message": "unsupported OS"},
                    "DeprecatedAPICheck",
                ]
            },
        )
        sparse = Event(
            dedup_key=f"sample-sparse:{kind}",
            kind=str(kind),
            severity=Severity.INFO,
            target=replace(base.target, labels={}),
            observed_at=base.observed_at,
            message=f"{kind} (sample)",
        )
        out += [[full], [sparse], [sparse, full]]
    return out


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
