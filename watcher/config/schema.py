"""The typed, frozen configuration tree (SPEC.md section 7).

Each TOML table is one sub-model, and every model forbids unknown keys so that a typo is an
error instead of a silently ignored setting. Validators only look at the values they are given
(no environment, no network); the loader in ``watcher.config.loader`` decides where the values
come from. Cross-field problems are raised as one ``watcher_problems`` error that carries
``(key path, message)`` pairs, so the loader can name the exact key and its environment
variable. No validator ever quotes a value it rejects: a secret may sit in the wrong place.

The models hold input only. The domain objects they configure live elsewhere, and each
model converts itself: ``PolicySettings.to_policy()`` and ``PollingSettings.to_poll_policy()``
(watcher.core.policy), ``Route.to_route()`` and ``Silence.to_silence()`` (watcher.core.silences),
``Target.to_ref()`` (watcher.core.events), ``NotifySettings.to_urls()`` (watcher.notify.url).
Defaults shared with the domain (stall thresholds, pre-check leads...) are imported, not copied.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watcher.config import sources
from watcher.config.durations import Duration
from watcher.config.sources import ENV_PREFIX
from watcher.core import regions, silences
from watcher.core.console import DEFAULT_CONSOLE_URL, template_problems
from watcher.core.events import Kind, Severity, TargetRef
from watcher.core.policy import (
    DEFAULT_LATE_AFTER,
    DEFAULT_PRECHECK_LEADS,
    DEFAULT_REPEAT_INTERVAL,
    DEFAULT_STALL_DEFAULT,
    DEFAULT_STALL_THRESHOLDS,
    Policy,
    PollPolicy,
    normalise_leads,
)
from watcher.core.ports import DEFAULT_SEND_TIMEOUT_S, MAX_SEND_TIMEOUT_S
from watcher.core.projects import ClusterSelection
from watcher.notify import routing
from watcher.notify.url import NotifyUrl, default_flavor, url_scheme

DEFAULT_STATE_DIR = Path("/var/lib/cce-upgrade-watcher")
KNOWN_KINDS: tuple[str, ...] = tuple(k.value for k in Kind)

# The [policy.stall] table: core's thresholds plus "default" (watcher.core.policy defines
# them once). Keys are canonicalised at load time without regard to case, because
# environment variable names arrive lower-cased; the engine's lookup is then exact.
DEFAULT_STALL: dict[str, timedelta] = {**DEFAULT_STALL_THRESHOLDS, "default": DEFAULT_STALL_DEFAULT}
_CANONICAL_STALL = {k.lower(): k for k in DEFAULT_STALL}

Loc = tuple[str | int, ...]


def problems(*items: tuple[Loc, str]) -> PydanticCustomError:
    """Build the error that carries several keyed problems out of one model validator."""
    return PydanticCustomError(
        "watcher_problems",
        "invalid configuration",
        {"problems": [(tuple(loc), msg) for loc, msg in items]},
    )


class _Section(BaseModel):
    """Base of every table: immutable, strict about unknown keys, never echoes input."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, str_strip_whitespace=True
    )


# Identifiers end up in URL paths of signed API calls, so they are restricted to the
# characters real IDs use; this also rules out path tricks such as "../".
CloudId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
_REGION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _region_id(value: str) -> str:
    """A region id's shape; a wrong one says what was probably meant (a region is not secret)."""
    if _REGION_ID.match(value):
        return value
    if re.search(r"REPLACE[-_A-Z]", value):
        raise ValueError("still holds a placeholder from the example (REPLACE-...)")
    hint = regions.suggest_region(value.replace("_", "-").replace(" ", "-"))
    message = "not a region id such as ap-southeast-3"
    raise ValueError(f"{message}; did you mean {hint!r}?" if hint else message)


Region = Annotated[str, AfterValidator(_region_id)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]


def _split_list(value: Any) -> Any:
    """Accept "a, b" as well as ["a", "b"] (handy in environment variables)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _check_http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^/\s?#]+(?:/[^\s?#]*)?$", value):
        raise ValueError("expected an http:// or https:// URL without query or fragment")
    return value.rstrip("/")


def _check_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError("file not found")
    return value


def _check_dir(value: Path | None) -> Path | None:
    if value is not None and not value.is_dir():
        raise ValueError("directory not found")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
ExistingFile = Annotated[Path, AfterValidator(_check_file)]
ExistingDir = Annotated[Path, AfterValidator(_check_dir)]
StrList = Annotated[tuple[str, ...], BeforeValidator(_split_list)]


def _kind_globs(value: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in value:
        if not any(fnmatch.fnmatchcase(kind, pattern) for kind in KNOWN_KINDS):
            raise ValueError(
                "a pattern matches no event kind (kinds look like task.failed, workflow.*)"
            )
    return value


KindGlobs = Annotated[StrList, AfterValidator(_kind_globs)]


def _lower_tags(value: tuple[str, ...]) -> tuple[str, ...]:
    for tag in value:
        if not re.match(r"^[A-Za-z0-9_.:-]+$", tag):
            raise ValueError("tags are words of letters, digits and _ . : -")
    return tuple(tag.lower() for tag in value)


Tags = Annotated[StrList, AfterValidator(_lower_tags)]


def _runbook(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


RunbookUrl = Annotated[str, StringConstraints(max_length=1000), AfterValidator(_runbook)]


# ----------------------------------------------------------------------------------- [cloud]


def _str_or_none(value: object | None) -> str | None:
    return None if value is None else str(value)


class CloudSettings(_Section):
    """Where the APIs are: region defaults and endpoint overrides (simulator, other clouds)."""

    region: Region | None = None
    project_id: CloudId | None = None
    cce_endpoint: HttpUrl | None = None
    iam_endpoint: HttpUrl | None = None
    ca_file: ExistingFile | None = None
    timeout_s: float = Field(default=20.0, gt=0, le=600)
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)

    def cce_endpoint_for(self, region: str) -> str:
        """The CCE base URL for a target's region (the override wins for every region)."""
        return regions.cce_endpoint(region, _str_or_none(self.cce_endpoint))

    def iam_endpoint_for(self, region: str) -> str:
        """The IAM base URL for a region (the override wins for every region)."""
        return regions.iam_endpoint(region, _str_or_none(self.iam_endpoint))


# ------------------------------------------------------------------------------ [credentials]


class CredentialsSettings(_Section):
    """How to authenticate. ``kind = "auto"`` picks AK/SK, then password, then metadata."""

    kind: Literal["auto", "aksk", "password", "metadata"] = "auto"
    access_key: str | None = Field(default=None, min_length=1, max_length=256)
    secret_key: SecretStr | None = Field(default=None, min_length=1)
    security_token: SecretStr | None = Field(default=None, min_length=1)
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: SecretStr | None = Field(default=None, min_length=1)
    domain: str | None = Field(default=None, min_length=1, max_length=256)
    metadata_endpoint: HttpUrl = "http://169.254.169.254"

    @property
    def effective_kind(self) -> Literal["aksk", "password", "metadata"]:
        """The mechanism the client uses after resolving ``auto``."""
        if self.kind != "auto":
            return self.kind
        if self.access_key and self.secret_key:
            return "aksk"
        if self.username and self.password:
            return "password"
        return "metadata"

    @model_validator(mode="after")
    def _complete(self) -> CredentialsSettings:
        found: list[tuple[Loc, str]] = []
        has_aksk = self.access_key is not None or self.secret_key is not None
        has_password = self.username is not None or self.password is not None
        kind = self.kind
        if kind == "auto":
            kind = "aksk" if has_aksk else "password" if has_password else "metadata"
        if kind == "aksk":
            for key in ("access_key", "secret_key"):
                if getattr(self, key) is None:
                    found.append(((key,), "Field required for AK/SK credentials"))
        elif kind == "password":
            for key in ("username", "password", "domain"):
                if getattr(self, key) is None:
                    found.append(((key,), "Field required for password credentials"))
        if self.security_token is not None and kind != "aksk":
            found.append((("security_token",), "only used with AK/SK credentials (temporary keys)"))
        if found:
            raise problems(*found)
        return self


# ---------------------------------------------------------------------------------- [[targets]]


# Cluster names are 4-128 lowercase letters, digits and hyphens; a glob adds * ? [ ] !.
_CLUSTER_GLOB = re.compile(r"^[A-Za-z0-9*?\[\]!._-]{1,128}$")


def _cluster_globs(value: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in value:
        if not _CLUSTER_GLOB.match(pattern):
            raise ValueError(
                "a cluster name glob is letters, digits, - . _ and the wildcards * ? [ ]"
                " (e.g. prod-*)"
            )
    return value


ClusterGlobs = Annotated[StrList, AfterValidator(_cluster_globs)]
LabelValue = Annotated[str, StringConstraints(max_length=256)]
# Kubernetes-style label keys may carry a prefix ("example.com/team") and values may be empty.
ClusterLabelKey = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=253, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$"
    ),
]


class Target(_Section):
    """One thing to watch: a workflow; a cluster whose workflows are discovered; or a
    project (one region, one API) whose clusters are discovered, each then watched like a
    cluster target named ``{name}/{cluster name}``."""

    name: Name
    kind: Literal["workflow", "cluster", "project"]
    region: Region
    project_id: CloudId
    cluster_id: CloudId | None = None
    workflow_id: CloudId | None = None
    api: Literal["cce", "autopilot"] = "cce"
    labels: dict[Name, LabelValue] = Field(default_factory=dict)
    display_name: str | None = Field(default=None, max_length=200)
    runbook_url: RunbookUrl | None = None
    # kind = "project" only: which clusters of the project are watched (every given
    # filter must agree; exclude wins over include).
    include: ClusterGlobs | None = None
    exclude: ClusterGlobs = ()
    cluster_labels: dict[ClusterLabelKey, LabelValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kind_fields(self) -> Target:
        found: list[tuple[Loc, str]] = []
        kind = self.kind
        if kind in ("workflow", "cluster") and self.cluster_id is None:
            hint = ' (or kind = "project" to watch every cluster)' if kind == "cluster" else ""
            found.append((("cluster_id",), f'Field required when kind = "{kind}"{hint}'))
        if kind == "workflow" and self.workflow_id is None:
            found.append((("workflow_id",), 'Field required when kind = "workflow"'))
        if kind == "cluster" and self.workflow_id is not None:
            found.append(
                (("workflow_id",), 'not allowed when kind = "cluster" (workflows are discovered)')
            )
        if kind == "project":
            for key in ("cluster_id", "workflow_id"):
                if getattr(self, key) is not None:
                    found.append(
                        ((key,), 'not allowed when kind = "project" (clusters are discovered)')
                    )
            if self.include == ():
                found.append((("include",), 'selects no cluster; leave it out for ["*"]'))
        else:
            for key in ("include", "exclude", "cluster_labels"):
                if getattr(self, key):
                    found.append(((key,), 'only used when kind = "project"'))
        if found:
            raise problems(*found)
        if kind == "project" and self.include is None:
            object.__setattr__(self, "include", ("*",))  # frozen: fill the default once
        return self

    @property
    def title(self) -> str:
        """What people see: the display name, else the name."""
        return self.display_name or self.name

    def to_ref(self) -> TargetRef:
        """The event-side identity of this target (watcher.core.events.TargetRef); a
        project target has no cluster id (its clusters' derived targets do)."""
        return TargetRef(
            name=self.name,
            region=self.region,
            project_id=self.project_id,
            cluster_id=self.cluster_id or "",
            labels=dict(self.labels),
            api=self.api,
        )

    def to_selection(self) -> ClusterSelection:
        """The project target's cluster filter (watcher.core.projects)."""
        return ClusterSelection.of(self.include or ("*",), self.exclude, self.cluster_labels)


def default_target_name(raw: Mapping[str, Any]) -> str | None:
    """Derive a name from the IDs: the first 8 characters of the cluster (and workflow) ID;
    for a project target, of the project ID (plus the API when it is Autopilot)."""
    if raw.get("kind") == "project":
        project = raw.get("project_id")
        if not isinstance(project, str) or not project:
            return None
        return f"{project[:8]}-autopilot" if raw.get("api") == "autopilot" else project[:8]
    cluster = raw.get("cluster_id")
    if not isinstance(cluster, str) or not cluster:
        return None
    workflow = raw.get("workflow_id")
    if isinstance(workflow, str) and workflow:
        return f"{cluster[:8]}-{workflow[:8]}"
    return cluster[:8]


# ---------------------------------------------------------------------------------- [polling]


class PollingSettings(_Section):
    """Poll cadence (SPEC.md 5) and the per-host request budget."""

    active_s: float = Field(default=15.0, gt=0)
    idle_s: float = Field(default=60.0, gt=0)
    failed_s: float = Field(default=60.0, gt=0)
    discovery_s: float = Field(default=120.0, gt=0)
    requests_per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=20, ge=1)
    unreachable_after: int = Field(default=5, ge=1)
    max_backoff_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _backoff(self) -> PollingSettings:
        if self.max_backoff_s < self.active_s:
            raise problems((("max_backoff_s",), "must be at least active_s"))
        return self

    def to_poll_policy(self) -> PollPolicy:
        """The scheduler's pure PollPolicy (watcher.core.policy); the floor never exceeds
        the active interval, so fast test configs are not slowed down."""
        return PollPolicy(
            active_s=self.active_s,
            idle_s=self.idle_s,
            failed_s=self.failed_s,
            discovery_s=self.discovery_s,
            min_s=min(self.active_s, PollPolicy().min_s),
        )


# ----------------------------------------------------------------------------------- [policy]


def _stall_table(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    merged: dict[str, Any] = dict(DEFAULT_STALL)
    for key, duration in value.items():
        name = str(key)
        merged[_CANONICAL_STALL.get(name.lower(), name)] = duration
    return merged


class PolicySettings(_Section):
    """Time rules of the diff: pre-check leads, stall thresholds, reminders, late marks."""

    precheck_leads: tuple[Duration, ...] = DEFAULT_PRECHECK_LEADS
    stall: Annotated[dict[str, Duration], BeforeValidator(_stall_table)] = Field(
        default_factory=lambda: dict(DEFAULT_STALL)
    )
    repeat_interval: Duration = DEFAULT_REPEAT_INTERVAL
    late_after: Duration = DEFAULT_LATE_AFTER

    @field_validator("precheck_leads")
    @classmethod
    def _leads(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        return normalise_leads(value)

    @field_validator("stall")
    @classmethod
    def _stall_positive(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        if any(threshold <= timedelta(0) for threshold in value.values()):
            raise ValueError("every stall threshold must be longer than zero")
        return value

    @field_validator("repeat_interval")
    @classmethod
    def _repeat(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    def to_policy(self) -> Policy:
        """The engine's pure Policy value (watcher.core.policy) built from these settings."""
        thresholds = {k: v for k, v in self.stall.items() if k != "default"}
        return Policy(
            precheck_leads=self.precheck_leads,
            stall_thresholds=thresholds,
            stall_default=self.stall.get("default", DEFAULT_STALL_DEFAULT),
            repeat_interval=self.repeat_interval,
            late_after=self.late_after,
        )


# ----------------------------------------------------------------------------------- [notify]


class NotifyUrlSetting(_Section):
    """One apprise URL as configured (the input form; ``watcher.notify.targets.build_urls``
    makes the runtime ``watcher.notify.url.NotifyUrl`` of it). The URL is a secret: it
    often embeds tokens or passwords."""

    url: SecretStr
    name: Name | None = None
    tags: Tags = ()
    flavor: Literal["chat", "email"]
    # How long one attempt waits for this service's answer; unset: notify.send_timeout_s.
    send_timeout_s: float | None = Field(default=None, gt=0, le=MAX_SEND_TIMEOUT_S)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"url": data}
        if isinstance(data, Mapping) and "flavor" not in data:
            url = data.get("url")
            data = {**data, "flavor": default_flavor(url) if isinstance(url, str) else "chat"}
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if url_scheme(text) is None or any(c.isspace() for c in text):
            raise ValueError("expected an apprise URL such as json://host/path or mailtos://…")
        return SecretStr(text)

    @property
    def scheme(self) -> str:
        return url_scheme(self.url.get_secret_value()) or ""

    def to_entry(self) -> dict[str, Any]:
        """The entry ``watcher.notify.targets.build_urls`` takes (it holds the secret URL)."""
        entry: dict[str, Any] = {
            "url": self.url.get_secret_value(),
            "tags": list(self.tags),
            "flavor": self.flavor,
        }
        if self.name:
            entry["name"] = self.name
        if self.send_timeout_s is not None:
            entry["send_timeout_s"] = self.send_timeout_s
        return entry


class Route(_Section):
    """Send events that match every given condition to the URLs with the given tags."""

    name: str | None = Field(default=None, max_length=64)
    kinds: KindGlobs = ("*",)
    exclude_kinds: KindGlobs = ()
    min_severity: Severity = Severity.INFO
    targets: StrList = ("*",)
    labels: dict[str, str] = Field(default_factory=dict)
    tags: Tags = ()
    runbook_url: RunbookUrl | None = None

    @field_validator("min_severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def to_route(self) -> routing.Route:
        """The routing module's Route (what plan() matches with); ``name`` is config-only."""
        return routing.Route(
            kinds=tuple(self.kinds),
            min_severity=self.min_severity,
            targets=tuple(self.targets),
            labels=dict(self.labels),
            tags=frozenset(self.tags),
            exclude_kinds=tuple(self.exclude_kinds),
            runbook_url=self.runbook_url,
        )


class TemplateOverride(_Section):
    """Jinja2 sources replacing the default title and/or body of one event kind."""

    title: str | None = None
    body: str | None = None


class TemplatesSettings(_Section):
    """Template overrides per event kind, and a directory of ``<kind>.title.j2`` files."""

    template_dir: ExistingDir | None = None
    kinds: dict[str, TemplateOverride] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _kinds_inline(cls, data: Any) -> Any:
        # [notify.templates."task.failed"] sits next to template_dir in the same table.
        if isinstance(data, Mapping):
            inline = {k: v for k, v in data.items() if k not in ("template_dir", "kinds")}
            if inline:
                kinds = data.get("kinds")
                merged = {**(kinds if isinstance(kinds, Mapping) else {}), **inline}
                data = {k: v for k, v in data.items() if k not in inline} | {"kinds": merged}
        return data

    @model_validator(mode="after")
    def _check(self) -> TemplatesSettings:
        from jinja2 import TemplateSyntaxError  # noqa: PLC0415  (only needed when validating)
        from jinja2.sandbox import SandboxedEnvironment  # noqa: PLC0415

        env = SandboxedEnvironment()
        found: list[tuple[Loc, str]] = []
        for kind, override in self.kinds.items():
            if kind not in KNOWN_KINDS:
                found.append(((kind,), "unknown event kind"))
            for part in ("title", "body"):
                source = getattr(override, part)
                if source is None:
                    continue
                try:
                    env.parse(source)
                except TemplateSyntaxError as exc:
                    found.append(
                        ((kind, part), f"template syntax error at line {exc.lineno}: {exc.message}")
                    )
        if found:
            raise problems(*found)
        return self


class NotifySettings(_Section):
    """Where events go: apprise URLs and config files, routes, retry limits, templates."""

    urls: tuple[NotifyUrlSetting, ...] = ()
    apprise_config: tuple[ExistingFile, ...] = ()
    max_age: Duration = timedelta(hours=24)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_cap_s: float = Field(default=600.0, gt=0)
    # How long one attempt waits for a service's answer (URLs may set their own). No
    # answer in time is an unknown outcome ("maybe delivered"), retried with backoff.
    send_timeout_s: float = Field(default=DEFAULT_SEND_TIMEOUT_S, gt=0, le=MAX_SEND_TIMEOUT_S)
    routes: tuple[Route, ...] = ()
    templates: TemplatesSettings = TemplatesSettings()
    # The workflow's page in the cloud console; {region} {project_id} {cluster_id}
    # {workflow_id}. Set "" to leave the link out.
    console_url: str = Field(default=DEFAULT_CONSOLE_URL, max_length=1000)

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, value: str) -> str:
        found = template_problems(value)
        if found:
            raise ValueError("; ".join(found))
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// or http://")
        return value

    @field_validator("urls", mode="before")
    @classmethod
    def _single(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Mapping) else value

    @field_validator("apprise_config", mode="before")
    @classmethod
    def _single_path(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value

    @model_validator(mode="after")
    def _names(self) -> NotifySettings:
        named: list[NotifyUrlSetting] = []
        seen: set[str] = set()
        found: list[tuple[Loc, str]] = []
        for index, item in enumerate(self.urls):
            name = item.name or f"{item.scheme}-{index + 1}"
            if name in seen:
                found.append((("urls", index, "name"), "duplicate notification URL name"))
            seen.add(name)
            named.append(item if item.name else item.model_copy(update={"name": name}))
        if self.retry_cap_s < self.retry_base_s:
            found.append((("retry_cap_s",), "must be at least retry_base_s"))
        if found:
            raise problems(*found)
        object.__setattr__(self, "urls", tuple(named))  # frozen: fill derived names once
        return self

    @property
    def has_destinations(self) -> bool:
        return bool(self.urls or self.apprise_config)

    def to_urls(
        self, base_dir: Path | None = None, extra: Sequence[str | Mapping[str, Any]] = ()
    ) -> list[NotifyUrl]:
        """The runtime NotifyUrl list: inline URLs, apprise config files (relative paths
        from ``base_dir``), then ``extra``. Raises ConfigError naming every problem."""
        from watcher.notify.targets import build_urls  # noqa: PLC0415  (imports apprise)

        entries: list[str | Mapping[str, Any]] = [url.to_entry() for url in self.urls]
        entries += [{"config": str(path)} for path in self.apprise_config]
        entries += list(extra)
        return build_urls(entries, base_dir=base_dir, send_timeout_s=self.send_timeout_s)


# ---------------------------------------------------------------------------------- [[silences]]


class Silence(_Section):
    """Mute matching events until a fixed time. Every given matcher must match."""

    target: str = "*"
    cluster_id: str | None = None
    workflow_id: str | None = None
    kinds: KindGlobs = ("*",)
    until: AwareDatetime
    reason: str = Field(default="", max_length=500)

    def to_silence(self, number: int) -> silences.Silence:
        """The domain Silence; ``number`` is its 1-based place in the config file, which
        names it ``config:N`` in muted events."""
        return silences.Silence(
            until=self.until,
            target=self.target,
            cluster_id=self.cluster_id,
            workflow_id=self.workflow_id,
            kinds=tuple(self.kinds),
            id=f"config:{number}",
            comment=self.reason,
        )


# ----------------------------------------------------------------------------------- [state]


class StateSettings(_Section):
    """Where durable state lives: the zero-setup SQLite file in ``state_dir`` (the default) or
    a shared PostgreSQL database (issue 11). The DSN is a secret: it usually carries a password,
    so it comes from the secret file ``state__dsn`` or ``WATCHER_STATE__DSN`` and is masked."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    dsn: SecretStr | None = Field(default=None, min_length=1)
    # Connections the PostgreSQL store keeps open at most (polls and deliveries share them).
    pool_size: int = Field(default=4, ge=1, le=100)

    @field_validator("backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StateSettings:
        if self.backend == "postgres" and self.dsn is None:
            raise problems(
                (
                    ("dsn",),
                    'backend "postgres" needs a DSN: secret file state__dsn or env '
                    "WATCHER_STATE__DSN, e.g. postgresql://watcher@db.example/watcher",
                )
            )
        if self.backend == "sqlite" and self.dsn is not None:
            raise problems(
                (("dsn",), 'a DSN is set but backend is "sqlite"; set backend = "postgres"')
            )
        return self


class HaSettings(_Section):
    """Replicas sharing one PostgreSQL store (issue 11): each target is polled by the replica
    holding its lease; a dead replica's targets are taken over within ``lease_s``. Without
    ``[state] backend = "postgres"`` there is one process and this table is not used."""

    # The takeover time: a lease row is renewed every lease_s / 3 and valid for two of those
    # rounds, so a dead replica's targets are taken within lease_s (runtime/leases.py).
    lease_s: float = Field(default=30.0, ge=3, le=3600)
    # This replica's name in the lease table; default hostname-pid-random (unique per start).
    replica_id: str | None = Field(default=None, min_length=1, max_length=200)


# ------------------------------------------------------------------------------- [http], [logging]


class HttpSettings(_Section):
    """The daemon's HTTP server: health, metrics, API, status page."""

    enabled: bool = True
    listen: str = "127.0.0.1:9851"
    token: SecretStr | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("a bearer token needs at least 16 characters")
        return value

    @property
    def host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.listen)[1]


def split_host_port(value: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"; raises ValueError without quoting the input."""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$", value)
    if not match:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9851 or [::1]:9851")
    host = match.group(1) or match.group(2)
    port = int(match.group(3))
    if not 0 < port < 65536:
        raise ValueError("the port must be between 1 and 65535")
    if match.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("invalid IPv6 address") from None
    return host, port


class HeartbeatSettings(_Section):
    """An optional dead-man's switch: a plain http(s) request every ``interval_s`` seconds
    while polls and the store are healthy (healthchecks.io, Uptime Kuma push, Cronitor...).
    The service pages someone when the pings stop. The URL is a secret (it holds a token)."""

    url: SecretStr | None = None
    interval_s: float = Field(default=60.0, ge=1, le=86400)
    method: Literal["GET", "POST"] = "GET"
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not re.match(r"^https?://[^/\s?#]+", text) or any(c.isspace() for c in text):
            raise ValueError(
                "expected a plain http:// or https:// URL, e.g. https://hc-ping.com/<uuid>"
            )
        return SecretStr(text)


class LoggingSettings(_Section):
    """Log level and renderer (auto: JSON unless stderr is a terminal)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


# ------------------------------------------------------------------------------------- root


class Settings(BaseSettings):
    """The whole configuration. Build it with ``watcher.config.load_settings``.

    ``watcher.config.settings_from_mapping(dict)`` validates a plain dict without reading any
    environment, secret file or config file (handy in tests). Note that ``Settings(...)`` and
    ``Settings.model_validate(...)`` both run the sources (BaseSettings behaviour).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    state_dir: Path = DEFAULT_STATE_DIR
    # Sent/dead deliveries and their events older than this are pruned from the store. Keep
    # it far longer than any outage: a pruned event's dedup key is forgotten.
    retention: Duration = timedelta(days=90)
    state: StateSettings = StateSettings()
    ha: HaSettings = HaSettings()
    cloud: CloudSettings = CloudSettings()
    credentials: CredentialsSettings = CredentialsSettings()
    targets: tuple[Target, ...] = ()
    polling: PollingSettings = PollingSettings()
    policy: PolicySettings = PolicySettings()
    notify: NotifySettings = NotifySettings()
    silences: tuple[Silence, ...] = ()
    http: HttpSettings = HttpSettings()
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    logging: LoggingSettings = LoggingSettings()

    _config_path: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init kwargs, WATCHER_* env, secret files, TOML, SDK fallback (see loader)."""
        return sources.customise_sources(settings_cls, init_settings, file_secret_settings)

    @property
    def config_path(self) -> Path | None:
        """The TOML file these settings were read from, if any."""
        return self._config_path

    @classmethod
    def _settings_log_debug(cls, states: dict[str, dict[str, Any]]) -> None:
        """Replace pydantic-settings' PYDANTIC_SETTINGS_DEBUG dump, which prints raw values."""
        import logging  # noqa: PLC0415

        logging.getLogger("pydantic_settings").debug(
            "settings sources (keys only): %s",
            {name: sorted(state) for name, state in states.items()},
        )

    @model_validator(mode="before")
    @classmethod
    def _target_defaults(cls, data: Any) -> Any:
        """Fill each target's region, project, name and kind from [cloud] and its IDs."""
        if not isinstance(data, Mapping):
            return data
        targets = data.get("targets")
        if isinstance(targets, Mapping):
            targets = [targets]
        if not isinstance(targets, list | tuple):
            return data
        cloud = data.get("cloud")
        if isinstance(cloud, CloudSettings):
            cloud = cloud.model_dump()
        cloud = cloud if isinstance(cloud, Mapping) else {}
        filled: list[Any] = []
        for raw in targets:
            if isinstance(raw, Mapping):
                item = dict(raw)
                for key in ("region", "project_id"):
                    if item.get(key) is None and isinstance(cloud.get(key), str):
                        item[key] = cloud[key]
                if "kind" not in item:
                    item["kind"] = "workflow" if item.get("workflow_id") else "cluster"
                if "name" not in item and (name := default_target_name(item)):
                    item["name"] = name
                filled.append(item)
            else:
                filled.append(raw)
        return {**data, "targets": filled}

    @model_validator(mode="after")
    def _unique_targets(self) -> Settings:
        found: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        ids: dict[tuple[Any, ...], int] = {}
        for index, target in enumerate(self.targets):
            if target.name in seen:
                found.append(
                    (
                        ("targets", index, "name"),
                        f"duplicate target name (also targets.{seen[target.name]})",
                    )
                )
            seen.setdefault(target.name, index)
            if target.kind == "project":
                # Two project targets on one project and API may split it by filters; the
                # very same filters would only watch every cluster twice.
                key: tuple[Any, ...] = (
                    "project",
                    target.region,
                    target.project_id,
                    target.api,
                    target.to_selection(),
                )
                what = "the same clusters of the same project"
            else:
                key = (target.cluster_id, target.workflow_id)
                what = "the same cluster/workflow"
            if key in ids:
                found.append((("targets", index), f"watches {what} as targets.{ids[key]}"))
            ids.setdefault(key, index)
        if found:
            raise problems(*found)
        return self

    def target(self, name: str) -> Target | None:
        """Look a target up by name."""
        return next((t for t in self.targets if t.name == name), None)

    def require_targets(self) -> list[str]:
        """Problems that stop ``run``/``check``: no target to watch. Empty when fine."""
        if self.targets:
            return []
        return [
            "targets: no targets configured: add at least one [[targets]] table"
            ' with cluster_id (and workflow_id), or kind = "project"'
            " (env WATCHER_TARGETS as JSON)"
        ]


def iter_secret_fields() -> Iterable[tuple[str, ...]]:
    """Key paths of the single-value secrets, as documented for secret files."""
    return (
        ("credentials", "secret_key"),
        ("credentials", "password"),
        ("credentials", "security_token"),
        ("http", "token"),
        ("state", "dsn"),
    )
