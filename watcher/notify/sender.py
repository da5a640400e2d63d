"""AppriseSender: the only place that hands rendered messages to apprise.

One ``apprise.Apprise`` object per NotifyUrl, so results and failures are per URL (the
outbox retries each URL on its own) and one service's throttle (``request_rate_per_sec``,
5.5 s for mailto) never delays another. Each object is warmed up at construction
(``add()`` + ``len()``), so plugin discovery does not run on the event loop later.

Inside ``send()`` only ``async_notify`` runs on the loop; apprise dispatches each plugin's
blocking ``send()`` to its worker threads (LIBRARIES.md 1.1). Bodies go out as
``NotifyFormat.TEXT``: the text came from the CCE API and must never reach an HTML
service as raw HTML; apprise escapes TEXT for HTML services.

Apprise prints URLs and custom headers unmasked at DEBUG/TRACE level, so while a sender
lives it keeps a redacting filter on apprise's logger (and urllib3's), and every error it
returns has passed through ``redact_text``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apprise
import structlog
from apprise import AppriseResultStatus, NotifyFormat, NotifyType

from watcher.core.errors import ConfigError
from watcher.core.events import Severity
from watcher.core.ports import RenderedMessage, SendResult
from watcher.logs import register_secret
from watcher.notify import console
from watcher.notify.redact import RedactingFilter
from watcher.notify.targets import NotifyUrl

APP_ID = "cce-upgrade-watcher"
APP_DESC = "CCE upgrade watcher"
APP_URL = "https://github.com/cce-upgrade-watcher/cce-upgrade-watcher"

MAX_ERROR_LEN = 300

# Loggers that may print a URL, a header or a query string in clear.
FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool", "urllib3.util.retry")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """One URL's answer to ``notify-test``."""

    key: str
    display: str
    ok: bool
    error: str | None


@dataclass(slots=True)
class _Entry:
    url: NotifyUrl
    apobj: apprise.Apprise


def make_asset(
    *, storage_path: str | Path | None = None, service_timeout: float = 60.0
) -> apprise.AppriseAsset:
    """The AppriseAsset of the watcher: app id, persistent storage, per-service timeout.

    ``storage_path`` (the state directory) keeps plugin state such as Opsgenie alert ids
    across restarts; without it apprise keeps that state in memory only.
    """
    kwargs: dict[str, Any] = {
        "app_id": APP_ID,
        "app_desc": APP_DESC,
        "app_url": APP_URL,
        "service_timeout": service_timeout,
        "secure_logging": True,
    }
    if storage_path is not None:
        kwargs["storage_path"] = str(storage_path)
        kwargs["storage_mode"] = "auto"
    return apprise.AppriseAsset(**kwargs)


class AppriseSender:
    """ports.Sender over apprise, one Apprise object per configured URL."""

    def __init__(
        self,
        urls: Sequence[NotifyUrl],
        *,
        storage_path: str | Path | None = None,
        service_timeout: float = 60.0,
    ) -> None:
        console.register()
        self._asset = make_asset(storage_path=storage_path, service_timeout=service_timeout)
        secrets: set[str] = set()
        for url in urls:
            secrets |= url.secrets
            secrets.add(url.url)
        self._filter = RedactingFilter(secrets)
        self._install_filter()
        # Also the process-wide registry: a URL's token can reach any logger (requests,
        # urllib3.connection, an exception message logged by the dispatcher).
        for secret in secrets:
            register_secret(secret)
        self._entries: dict[str, _Entry] = {}
        problems: list[str] = []
        for url in urls:
            if url.key in self._entries:
                problems.append(f"notification URL key {url.key!r} is used more than once")
                continue
            apobj = apprise.Apprise(asset=self._asset)
            if not apobj.add(url.url) or len(apobj) != 1:
                problems.append(f"notification URL {url.key!r}: apprise cannot parse it")
                continue
            self._entries[url.key] = _Entry(url=url, apobj=apobj)
        if problems:
            self.close()
            raise ConfigError(problems)

    @property
    def urls(self) -> list[NotifyUrl]:
        return [entry.url for entry in self._entries.values()]

    def _install_filter(self) -> None:
        for name in FILTERED_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def close(self) -> None:
        """Remove the log filter; the sender must not be used afterwards."""
        for name in FILTERED_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    def __enter__(self) -> AppriseSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def send(self, url_key: str, *, title: str, body: str, severity: Severity) -> SendResult:
        """Send one message to one URL; never raises for a delivery failure."""
        entry = self._entries.get(url_key)
        if entry is None:
            return SendResult(ok=False, error=f"unknown notification URL key {url_key!r}")
        if not body.strip():
            # apprise refuses an empty body; the title alone still says what happened.
            body = title or "(no content)"
        try:
            result = await entry.apobj.async_notify(
                body=body,
                title=title,
                notify_type=NotifyType(str(severity)),
                body_format=NotifyFormat.TEXT,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a plugin bug must not take down the dispatcher
            reason = entry.url.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_LEN]
            log.warning("notify.crashed", url_key=url_key, error=reason)
            return SendResult(ok=False, error=reason)
        with result:
            ok = bool(result)
            error = None if ok else _reason(result, entry.url)
            elapsed = round(float(result.elapsed), 3)
        if ok:
            log.debug("notify.sent", url_key=url_key, elapsed_s=elapsed)
        else:
            log.info("notify.failed", url_key=url_key, elapsed_s=elapsed, error=error)
        return SendResult(ok=ok, error=error)

    async def test_all(
        self,
        message: RenderedMessage | Callable[[NotifyUrl], RenderedMessage] | None = None,
    ) -> list[TestOutcome]:
        """Send a test message to every URL at once; one outcome per URL, in config order."""

        def pick(url: NotifyUrl) -> RenderedMessage:
            if message is None:
                return RenderedMessage(
                    title=f"[TEST] {APP_DESC}",
                    body="This is a test notification. Delivery works.",
                    severity=Severity.INFO,
                )
            return message(url) if callable(message) else message

        entries = list(self._entries.values())
        messages = [pick(entry.url) for entry in entries]
        results = await asyncio.gather(
            *(
                self.send(e.url.key, title=m.title, body=m.body, severity=m.severity)
                for e, m in zip(entries, messages, strict=True)
            )
        )
        return [
            TestOutcome(key=e.url.key, display=e.url.display, ok=r.ok, error=r.error)
            for e, r in zip(entries, results, strict=True)
        ]


def _reason(result: Any, url: NotifyUrl) -> str:
    """A short, secret-free reason for a failed apprise call."""
    status = result.status
    if status == AppriseResultStatus.NOMATCH:
        return "apprise matched no service"
    parts: list[str] = []
    for notify_result in result:
        messages = [
            entry.message
            for entry in notify_result.logs()
            if str(entry.level).upper() in {"WARNING", "ERROR", "CRITICAL"}
        ]
        state = AppriseResultStatus(notify_result.status).name.lower()
        if notify_result.status == AppriseResultStatus.TIMEOUT:
            parts.append(f"timed out after {notify_result.elapsed:.1f}s")
        elif messages:
            # The last lines are the most specific ("... Response Details: ..." comes
            # after the status line), but the first says what failed; keep both.
            picked = messages[0] if len(messages) == 1 else f"{messages[0]} {messages[-1]}"
            parts.append(picked)
        else:
            parts.append(f"{notify_result.name}: {state}")
    if not parts:
        parts = [m.message for m in result.logs()] or [AppriseResultStatus(status).name.lower()]
    text = " | ".join(" ".join(p.split()) for p in parts)
    text = url.redact(text)
    if len(text) > MAX_ERROR_LEN:
        text = text[: MAX_ERROR_LEN - 3] + "..."
    return text
