"""`config validate`'s extra checks: the mistakes the schema lets through.

The schema accepts anything shaped like an id, so that tests and other Huawei-based clouds
work; a newcomer's usual mistakes (a typo in a region, a project id copied with dashes, a
route whose tags no URL carries, a placeholder left from the example, an e-mail URL without
a login, an HTTP server open to the network without a token) only show up at run time,
as a DNS error, a 404, a message that goes nowhere. These checks find them before that.

Each finding names the key, its environment variable and, where one is close, what was
probably meant. Values are never quoted (a secret may sit in the wrong key), except the
region, which is not secret and is what the suggestion is about. Pure: no I/O beyond what
``Settings`` already resolved, so it is cheap to run in CI.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from watcher.config.loader import env_name
from watcher.config.schema import Settings
from watcher.core import regions
from watcher.core.errors import ConfigError

Level = Literal["error", "warning"]
Loc = tuple[str | int, ...]

PROJECT_ID = re.compile(r"^[0-9a-f]{32}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PLACEHOLDER = re.compile(r"REPLACE[-_A-Z]")
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: an error makes `config validate` exit 2, a warning does not."""

    level: Level
    loc: Loc
    message: str
    suggestion: str | None = None

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.loc)

    def line(self) -> str:
        text = f"{self.key}: {self.message} (env {env_name(self.loc)})"
        if self.suggestion:
            text += f"; did you mean {self.suggestion}?"
        return text


def lint(settings: Settings) -> list[Finding]:
    """Every finding for ``settings``, errors and warnings, in key order."""
    found: list[Finding] = []
    found += _regions(settings)
    found += _ids(settings)
    found += _projects(settings)
    found += _placeholders(settings)
    found += _email_urls(settings)
    found += _routes(settings)
    found += _http(settings)
    found += _state_dir(settings)
    return found


# ------------------------------------------------------------------------------ cloud ids


def _target_loc(settings: Settings, index: int, key: str) -> Loc | None:
    """Where a target's region/project came from: [cloud] when it is the default's value
    (reported once there), else the target itself."""
    value = getattr(settings.targets[index], key)
    if getattr(settings.cloud, key) == value:
        return None
    return ("targets", index, key)


def _regions(settings: Settings) -> Iterator[Finding]:
    overridden = settings.cloud.cce_endpoint is not None
    items: list[tuple[Loc, str]] = []
    if settings.cloud.region:
        items.append((("cloud", "region"), settings.cloud.region))
    for index, target in enumerate(settings.targets):
        if (loc := _target_loc(settings, index, "region")) is not None:
            items.append((loc, target.region))
    for loc, region in items:
        try:  # what `run` does first with a region: derive the endpoints
            settings.cloud.cce_endpoint_for(region)
            settings.cloud.iam_endpoint_for(region)
        except ConfigError:
            yield Finding("error", loc, "not a region id such as ap-southeast-3")
            continue
        if overridden or region in regions.KNOWN_REGIONS:
            continue
        hint = regions.suggest_region(region)
        yield Finding(
            "error",
            loc,
            f"unknown Huawei Cloud region {region!r} (a new region or another cloud:"
            " set cloud.cce_endpoint and cloud.iam_endpoint)",
            repr(hint) if hint else None,
        )


def _ids(settings: Settings) -> Iterator[Finding]:
    checks: list[tuple[Loc, str, str]] = []
    if settings.cloud.project_id:
        checks.append((("cloud", "project_id"), settings.cloud.project_id, "project"))
    for index, target in enumerate(settings.targets):
        if (loc := _target_loc(settings, index, "project_id")) is not None:
            checks.append((loc, target.project_id, "project"))
        if target.cluster_id:
            checks.append((("targets", index, "cluster_id"), target.cluster_id, "uuid"))
        if target.workflow_id:
            checks.append((("targets", index, "workflow_id"), target.workflow_id, "uuid"))
    for loc, value, shape in checks:
        if shape == "project" and not PROJECT_ID.match(value):
            yield Finding(
                "error",
                loc,
                "a project id is 32 hexadecimal characters (console: My Credentials > Projects)",
                _id_suggestion(value, shape),
            )
        elif shape == "uuid" and not UUID.match(value):
            yield Finding(
                "error",
                loc,
                "expected a UUID such as 5e4a6c1d-0f3b-11ef-9a41-0255ac100022",
                _id_suggestion(value, shape),
            )


def _projects(settings: Settings) -> Iterator[Finding]:
    """Project targets whose filters cannot select what they seem to: CCE cluster names
    are lowercase (globs match case-sensitively), and an exclude that covers an include
    leaves it selecting nothing."""
    for index, target in enumerate(settings.targets):
        if target.kind != "project":
            continue
        include = target.include or ("*",)
        for key, patterns in (("include", include), ("exclude", target.exclude)):
            for pattern in patterns:
                if pattern != pattern.lower():
                    yield Finding(
                        "warning",
                        ("targets", index, key),
                        f"{target.name}: {pattern!r} has capitals, but cluster names are"
                        " lowercase and globs match case-sensitively",
                        repr(pattern.lower()),
                    )
        if "*" in target.exclude or all(p in target.exclude for p in include):
            yield Finding(
                "error",
                ("targets", index, "exclude"),
                f"{target.name}: exclude removes every cluster include selects",
            )


def _route_may_match(pattern: str, settings: Settings) -> bool:
    """A route's target glob can match a target: a configured name, or a cluster target a
    project target derives (``{project}/{cluster}``), whose cluster names are unknown."""
    for target in settings.targets:
        if re.fullmatch(_glob(pattern), target.name):
            return True
        if target.kind == "project":
            head, sep, _tail = pattern.partition("/")
            if sep and re.fullmatch(_glob(head), target.name):
                return True
            if re.fullmatch(_glob(pattern), f"{target.name}/x"):  # "proj*", "*"
                return True
    return False


def _id_suggestion(value: str, shape: str) -> str | None:
    """The id reformatted, when only case or dashes are wrong (ids are not secret)."""
    bare = value.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", bare):
        return None
    if shape == "project":
        return repr(bare)
    return repr(f"{bare[:8]}-{bare[8:12]}-{bare[12:16]}-{bare[16:20]}-{bare[20:]}")


# ------------------------------------------------------------------------------ placeholders


def _walk(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, SecretStr):
        yield loc, value.get_secret_value()
    elif isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*loc, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*loc, index))


def _placeholders(settings: Settings) -> Iterator[Finding]:
    data = {name: getattr(settings, name) for name in type(settings).model_fields}
    for name, value in data.items():
        dumped = value.model_dump() if hasattr(value, "model_dump") else value
        if isinstance(value, tuple):
            dumped = [v.model_dump() if hasattr(v, "model_dump") else v for v in value]
        for loc, text in _walk(dumped, (name,)):
            if PLACEHOLDER.search(text):
                yield Finding(
                    "error",
                    loc,
                    _named(
                        settings, loc, "still holds a placeholder from the example (REPLACE-...)"
                    ),
                )


def _named(settings: Settings, loc: Loc, message: str) -> str:
    """Prefix the URL's or target's name, so a list index is easy to find."""
    if len(loc) >= 3 and loc[:2] == ("notify", "urls") and isinstance(loc[2], int):
        return f"{settings.notify.urls[loc[2]].name}: {message}"
    if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
        return f"{settings.targets[loc[1]].name}: {message}"
    return message


def _split(url: str) -> Any:
    """urlsplit for any apprise scheme (the scheme is swapped so netloc parsing applies)."""
    _, _, rest = url.partition("://")
    return urlsplit("x://" + rest)


def _email_urls(settings: Settings) -> Iterator[Finding]:
    for index, url in enumerate(settings.notify.urls):
        if url.scheme != "mailtos":
            continue
        parts = _split(url.url.get_secret_value())
        query = {k.lower() for k in parse_qs(parts.query, keep_blank_values=True)}
        has_password = parts.password is not None or "pass" in query or "password" in query
        if not has_password:
            yield Finding(
                "error",
                ("notify", "urls", index, "url"),
                f"{url.name}: mailtos:// (SMTP over TLS) without a login: the server will"
                " refuse the message",
                "mailtos://user:password@smtp.host?to=... (or ?user=...&pass=...)",
            )


# ------------------------------------------------------------------------------ routes


def _routes(settings: Settings) -> Iterator[Finding]:
    if not settings.notify.has_destinations:
        return
    base = settings.config_path
    try:
        urls = settings.notify.to_urls(base_dir=base.parent if base else None)
    except ConfigError:  # reported by `config validate` itself, with the other findings
        return
    url_tags = sorted({t for u in urls for t in u.tags})
    names = [t.name for t in settings.targets]
    for index, route in enumerate(settings.notify.routes):
        loc: Loc = ("notify", "routes", index)
        label = f"route {route.name!r}" if route.name else f"route {index}"
        production = route.to_route()
        if route.tags and not any(production.selects(u) for u in urls):
            missing = ", ".join(sorted(route.tags))
            close = [c for t in route.tags for c in difflib.get_close_matches(t, url_tags, n=1)]
            yield Finding(
                "error",
                (*loc, "tags"),
                f"{label}: no notification URL has the tag(s) {missing}, so its events go"
                f" nowhere (URL tags: {', '.join(url_tags) or 'none'})",
                ", ".join(repr(c) for c in close) or None,
            )
        if names and route.targets != ("*",):
            for pattern in route.targets:
                if not _route_may_match(pattern, settings):
                    close = difflib.get_close_matches(pattern, names, n=1)
                    yield Finding(
                        "warning",
                        (*loc, "targets"),
                        f"{label}: {pattern!r} matches no configured target",
                        repr(close[0]) if close else None,
                    )


def _glob(pattern: str) -> str:
    import fnmatch  # noqa: PLC0415

    return fnmatch.translate(pattern)


# ------------------------------------------------------------------------------ http, state


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http(settings: Settings) -> Iterator[Finding]:
    http = settings.http
    if http.enabled and http.token is None and not is_loopback(http.host):
        yield Finding(
            "warning",
            ("http", "listen"),
            "listens beyond loopback without a token: anyone who can reach it reads the"
            " workflows and events; set http.token (secret file http__token)",
        )


def _state_dir(settings: Settings) -> Iterator[Finding]:
    path = Path(settings.state_dir)
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
        yield Finding(
            "warning",
            ("state_dir",),
            f"{probe} is not a writable directory for this user: `run` cannot create its"
            " state store there (fine if the daemon runs as another user)",
        )


def lines(findings: Sequence[Finding], level: Level) -> list[str]:
    return [f.line() for f in findings if f.level == level]


_LIST_ITEM = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*)\[(\d+)\]")


def with_env(problem: str) -> str:
    """Add the environment variable to a problem that names a list item (``notify.urls[0]``)
    but not its variable, so every line of `config validate` says where to fix it."""
    match = _LIST_ITEM.match(problem)
    if match is None or "(env " in problem:
        return problem
    loc: Loc = (*match.group(1).split("."), int(match.group(2)))
    return f"{problem} (env {env_name(loc)})"
