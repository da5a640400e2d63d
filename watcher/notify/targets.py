"""The configured notification URLs, as values the rest of the watcher can hold and log.

A notification URL is a secret (tokens, passwords, webhook keys), so everything outside
the sender refers to it by ``NotifyUrl.key``: a configured name or a hash of the URL,
never the URL itself. This module turns the two configuration forms (inline URL
strings/tables and apprise YAML/TEXT config files) into one flat list of ``NotifyUrl``,
one per apprise service, so the outbox tracks and retries each service on its own.

Parsing happens once at startup, off the event loop's hot path: reading a config file and
loading apprise's plugins are blocking.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import apprise

from watcher import redact
from watcher.core.errors import ConfigError
from watcher.core.ports import DEFAULT_SEND_TIMEOUT_S, MAX_SEND_TIMEOUT_S
from watcher.notify import console
from watcher.notify.redact import RedactingFilter
from watcher.notify.url import FLAVORS, Flavor, NotifyUrl, default_flavor, url_scheme

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_AUTH_WORDS = frozenset({"bearer", "basic", "token", "digest"})
# URL parts that are never secret: lowercase words ("send", "cgi-bin") and DNS names or
# addresses ("qyapi.weixin.qq.com", "127.0.0.1"). A native webhook URL keeps such parts
# that apprise's normalised form drops; registering them would mask "send" in every log.
# A "word" is at most 16 letters: a longer lowercase run ("abcdefabcdefabcdef") is a token
# that happens to have no digit or capital, and a generic webhook prints its path in clear.
_PUBLIC_PART = re.compile(r"[a-z][a-z-]{0,15}|[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?")
# A path segment or value that looks like a token even where apprise prints it in clear
# (a generic json:// webhook's path): 8+ characters mixing digits or capitals in, or 17+ of
# any kind (longer than any word _PUBLIC_PART lets through).
_TOKEN_LIKE = re.compile(r"(?=.*[0-9A-Z])[A-Za-z0-9_~.+=-]{8,}|[A-Za-z0-9_~.+=-]{17,}")


log = logging.getLogger(__name__)


def url_key(url: str) -> str:
    """A stable id for an unnamed URL: a short hash, which reveals nothing of it."""
    return "url-" + hashlib.sha256(url.strip().encode()).hexdigest()[:12]


def _split_tags(value: Any, where: str, problems: list[str]) -> frozenset[str]:
    if value is None:
        return frozenset()
    items: Iterable[Any]
    if isinstance(value, str):
        items = re.split(r"[,\s]+", value)
    elif isinstance(value, Iterable):
        items = value
    else:
        problems.append(f"{where}.tags: expected a list of strings")
        return frozenset()
    tags = set()
    for item in items:
        if not isinstance(item, str):
            problems.append(f"{where}.tags: expected a list of strings")
            continue
        tag = item.strip().lower()
        if tag:
            tags.add(tag)
    return frozenset(tags)


def _secrets_of(url: str, masked: str) -> frozenset[str]:
    """Guess the secret parts of a URL: whatever apprise masked, plus obvious credentials.

    A user, path segment or query value that does not survive in apprise's privacy form
    was masked by the plugin and is treated as secret. Passwords, ``+Header`` values and
    values of keys that look sensitive are secret whatever the plugin thinks (apprise
    prints custom headers in clear, LIBRARIES.md 1.13).
    """
    try:
        parts = urlsplit(url.strip())
        password = parts.password
        username = parts.username
    except ValueError:
        return frozenset({url.strip()})
    masked_plain = unquote(masked)
    found: set[str] = set()
    if password:
        found.add(password)
    candidates: list[str] = []
    if username:
        candidates.append(username)
    host = parts.netloc.rpartition("@")[2]
    if host:
        candidates.append(host)
    candidates += [seg for seg in parts.path.split("/") if seg]
    # "#fragment": a channel for some plugins (kept when apprise prints it), a token for
    # others (a native webhook URL pasted whole): judged like a path segment.
    candidates += [seg for seg in parts.fragment.split("/") if seg]
    for pair in parts.query.split("&"):
        key, _, value = pair.partition("=")
        key_plain = unquote(key)
        if not value:
            continue
        if key_plain.startswith("+") or redact.is_secret_param(key_plain):
            found.add(value)
        else:
            candidates.append(value)
    for candidate in candidates:
        plain = unquote(candidate)
        if len(plain) < redact.MIN_SECRET_LEN or _PUBLIC_PART.fullmatch(plain):
            continue  # "send", "services", "hooks.slack.com": masking them hides nothing
        if plain not in masked_plain or _TOKEN_LIKE.fullmatch(plain):
            found.add(candidate)
    expanded: set[str] = set()
    for secret in found:
        expanded |= redact.secret_variants(secret)
        # "Bearer%20abc": the credential alone may be printed too.
        for word in unquote(secret).split():
            if word.lower() not in _AUTH_WORDS:
                expanded |= redact.secret_variants(word)
    return frozenset(expanded)


@contextmanager
def _quiet_apprise(secrets: Iterable[str]) -> Iterator[None]:
    """Redact apprise's own log lines while it parses a URL (it logs them unmasked)."""
    filt = RedactingFilter(secrets)
    logger = logging.getLogger("apprise")
    logger.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)


def _instantiate(url: str, asset: apprise.AppriseAsset | None) -> Any:
    console.register()
    # apprise cannot tell its own log lines apart from ours, so the whole URL is a
    # "secret" while it is being parsed.
    with _quiet_apprise({url.strip(), *_secrets_of(url, "")}):
        return apprise.Apprise.instantiate(url.strip(), asset=asset)


def from_service(
    service: Any,
    *,
    key: str,
    tags: Iterable[str] = (),
    flavor: Flavor | None = None,
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
) -> NotifyUrl:
    """A NotifyUrl for an already parsed apprise plugin instance."""
    url = str(service.url(privacy=False))
    masked = str(service.url(privacy=True))
    secrets = _secrets_of(url, masked)
    service_tags = {str(t).lower() for t in (getattr(service, "tags", None) or ())}
    return NotifyUrl(
        key=key,
        url=url,
        tags=frozenset(service_tags | {t.lower() for t in tags}),
        flavor=flavor or default_flavor(url),
        display=redact.redact_text(masked, secrets),
        secrets=secrets,
        send_timeout_s=send_timeout_s,
    )


def parse_url(
    url: str,
    *,
    name: str | None = None,
    tags: Iterable[str] = (),
    flavor: Flavor | None = None,
    where: str = "notify.urls",
    asset: apprise.AppriseAsset | None = None,
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
) -> NotifyUrl:
    """Validate one inline URL with apprise; ConfigError names ``where``, never the URL."""
    label = f"{where} (name {name!r})" if name else where
    service = _instantiate(url, asset) if isinstance(url, str) and url.strip() else None
    if service is None:
        raise ConfigError([f"{label}: apprise cannot parse this notification URL"])
    masked = str(service.url(privacy=True))
    secrets = _secrets_of(str(service.url(privacy=False)), masked) | _secrets_of(url, masked)
    service_tags = {str(t).lower() for t in (getattr(service, "tags", None) or ())}
    # Keep the URL as configured: apprise's url() normalises it and a plugin may not
    # print back every detail the user wrote.
    return NotifyUrl(
        key=name or url_key(url),
        url=url.strip(),
        tags=frozenset(service_tags | {t.lower() for t in tags}),
        flavor=flavor or default_flavor(url),
        display=redact.redact_text(masked, secrets),
        secrets=secrets,
        send_timeout_s=send_timeout_s,
    )


def load_config_file(
    path: str | Path,
    *,
    name: str | None = None,
    tags: Iterable[str] = (),
    flavor: Flavor | None = None,
    recursion: int = 1,
    where: str = "notify.config",
    asset: apprise.AppriseAsset | None = None,
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
) -> list[NotifyUrl]:
    """Expand an apprise YAML/TEXT config file into one NotifyUrl per service.

    ``recursion`` >= 1 makes ``include:`` work (apprise ignores includes at 0). Keys are
    ``<name>.<hash of URL and tags>`` (or ``url-<hash>``), so they stay stable when the
    file is reordered.
    Only local files are read: a remote config would be a blocking HTTP fetch.
    """
    label = f"{where} (name {name!r})" if name else where
    source = Path(path)
    if url_scheme(str(path)) is not None and not str(path).startswith("file://"):
        raise ConfigError([f"{label}: only local apprise config files are supported"])
    if not source.is_file():
        raise ConfigError([f"{label}: apprise config file {str(source)!r} does not exist"])
    console.register()
    config = apprise.AppriseConfig(recursion=recursion, asset=asset)
    with _quiet_apprise(()):
        added = config.add(str(source.resolve()))
        services: list[Any] = list(config.services()) if added else []
    if not services:
        raise ConfigError(
            [f"{label}: apprise config file {str(source)!r} defines no usable notification URL"]
        )
    extra = {t.lower() for t in tags}
    out = []
    for service in services:
        # The same URL may appear twice with different tags; the tags keep keys apart.
        service_tags = sorted(str(t).lower() for t in (getattr(service, "tags", None) or ()))
        digest = url_key(str(service.url(privacy=False)) + "|" + ",".join(service_tags))
        key = f"{name}.{digest[4:]}" if name else digest
        out.append(
            from_service(service, key=key, tags=extra, flavor=flavor, send_timeout_s=send_timeout_s)
        )
    return out


def build_urls(
    entries: Sequence[str | Mapping[str, Any]],
    *,
    where: str = "notify.urls",
    base_dir: str | Path | None = None,
    asset: apprise.AppriseAsset | None = None,
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S,
) -> list[NotifyUrl]:
    """Build the NotifyUrl list from configuration entries, collecting every problem.

    An entry is a URL string, a table ``{url, name?, tags?, flavor?, send_timeout_s?}``
    or a table ``{config, name?, tags?, flavor?, send_timeout_s?}`` naming an apprise
    YAML/TEXT file (relative paths resolve against ``base_dir``). ``send_timeout_s`` is
    the default for entries that do not set their own. Raises ConfigError with one line
    per problem; no line contains a URL.
    """
    problems: list[str] = []
    urls: list[NotifyUrl] = []
    for index, entry in enumerate(entries):
        pos = f"{where}[{index}]"
        try:
            urls += _build_one(entry, pos, base_dir, asset, problems, send_timeout_s)
        except ConfigError as exc:
            problems += exc.problems
    seen: dict[str, int] = {}
    for url in urls:
        seen[url.key] = seen.get(url.key, 0) + 1
    problems += [
        f"{where}: notification URL key {key!r} is used {count} times "
        "(give each URL its own name, or remove the duplicate)"
        for key, count in seen.items()
        if count > 1
    ]
    if problems:
        raise ConfigError(problems)
    return urls


def _build_one(
    entry: str | Mapping[str, Any],
    pos: str,
    base_dir: str | Path | None,
    asset: apprise.AppriseAsset | None,
    problems: list[str],
    send_timeout_s: float,
) -> list[NotifyUrl]:
    if isinstance(entry, str):
        return [parse_url(entry, where=pos, asset=asset, send_timeout_s=send_timeout_s)]
    if not isinstance(entry, Mapping):
        problems.append(f"{pos}: expected a URL string or a table")
        return []
    known = {"url", "config", "name", "tags", "flavor", "send_timeout_s"}
    unknown = sorted(str(k) for k in entry if k not in known)
    if unknown:
        problems.append(f"{pos}: unknown keys {', '.join(unknown)}")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        problems.append(f"{pos}.name: use letters, digits, '_', '.', '-' (at most 64)")
        return []
    flavor = entry.get("flavor")
    if flavor is not None and flavor not in FLAVORS:
        problems.append(f"{pos}.flavor: expected one of {', '.join(FLAVORS)}")
        return []
    tags = _split_tags(entry.get("tags"), pos, problems)
    timeout = entry.get("send_timeout_s", send_timeout_s)
    if timeout is None:
        timeout = send_timeout_s
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_SEND_TIMEOUT_S
    ):
        problems.append(f"{pos}.send_timeout_s: expected seconds in (0, {MAX_SEND_TIMEOUT_S:g}]")
        return []
    has_url, has_config = "url" in entry, "config" in entry
    if has_url == has_config:
        problems.append(f"{pos}: give exactly one of 'url' or 'config'")
        return []
    if has_url:
        url = entry["url"]
        if not isinstance(url, str):
            problems.append(f"{pos}.url: expected a string")
            return []
        return [
            parse_url(
                url,
                name=name,
                tags=tags,
                flavor=flavor,
                where=pos,
                asset=asset,
                send_timeout_s=float(timeout),
            )
        ]
    path = entry["config"]
    if not isinstance(path, str | Path):
        problems.append(f"{pos}.config: expected a file path")
        return []
    resolved = Path(path)
    if base_dir is not None and not resolved.is_absolute():
        resolved = Path(base_dir) / resolved
    return load_config_file(
        resolved,
        name=name,
        tags=tags,
        flavor=flavor,
        where=f"{pos}.config",
        asset=asset,
        send_timeout_s=float(timeout),
    )
