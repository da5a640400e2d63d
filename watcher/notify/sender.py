"""AppriseSender: the only place that hands rendered messages to apprise.

One ``apprise.Apprise`` object per NotifyUrl, so results and failures are per URL (the
outbox retries each URL on its own) and one service's throttle (``request_rate_per_sec``,
5.5 s for mailto) never delays another. Each object is warmed up at construction
(``add()`` + ``len()``), so plugin discovery does not run on the event loop later.

Each ``send()`` runs apprise's blocking ``notify()`` in its URL's own worker thread
(``SerialWorker``: one call at a time, in order) and waits for the call to end: not
apprise's shared pool and not its service timeout, because apprise stops *waiting* at a
timeout while its thread keeps posting (LIBRARIES.md 1.1), and a retry would then race (or
overtake) a message still on the wire. One long-lived thread per URL rather than one per
send: starting a thread blocks the event loop until it runs, once per message in a burst. The URL's
``send_timeout_s`` is set as the plugin's socket read timeout instead, so the thread
itself ends when the service does not answer in time. Such an attempt was sent and not
answered: its outcome is unknown, and the result says so (``uncertain``, "maybe
delivered"). The threads are daemon threads, so a hung plugin cannot hold up exit.

Bodies go out as
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
from watcher.notify.url import NotifyUrl
from watcher.notify.worker import SerialWorker

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


# Added to an attempt's worst case before the caller is told the sender is stuck.
_STUCK_MARGIN_S = 5.0


@dataclass(slots=True)
class _Entry:
    url: NotifyUrl
    apobj: apprise.Apprise
    # A failed attempt that waited this long went out and got no answer in time.
    answer_timeout_s: float
    # The longest one send() can take when every socket timeout is honoured.
    worst_case_s: float
    worker: SerialWorker  # runs this URL's notify() calls, one at a time


def make_asset(*, storage_path: str | Path | None = None) -> apprise.AppriseAsset:
    """The AppriseAsset of the watcher: app id, persistent storage, no apprise timeout.

    ``storage_path`` (the state directory) keeps plugin state such as Opsgenie alert ids
    across restarts; without it apprise keeps that state in memory only.
    ``service_timeout=0`` and ``async_mode=False`` make ``notify()`` run the plugin in the
    calling thread and wait for it, so the sender knows when a send has really ended.
    """
    kwargs: dict[str, Any] = {
        "app_id": APP_ID,
        "app_desc": APP_DESC,
        "app_url": APP_URL,
        "service_timeout": 0,
        "async_mode": False,
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
    ) -> None:
        console.register()
        self._asset = make_asset(storage_path=storage_path)
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
            self._entries[url.key] = _entry(url, apobj)
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
        """Remove the log filter (idempotent); the sender must not be used afterwards.

        Call it only once no send is running: a send still in its thread may log.
        """
        for name in FILTERED_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)
        for entry in self._entries.values():
            entry.worker.close()

    def stuck_after_s(self, url_key: str) -> float:
        """How long one ``send`` to this URL can take when the service honours no
        timeout of ours but every socket timeout holds; beyond it, something hangs."""
        entry = self._entries.get(url_key)
        return entry.worst_case_s if entry is not None else 60.0

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
        notify = entry.apobj.notify
        try:
            # Cancelling this await abandons the call, it does not stop it: a caller
            # that must not overlap sends to one URL waits for send() to return.
            result = await entry.worker.run(
                lambda: notify(
                    body=body,
                    title=title,
                    notify_type=NotifyType(str(severity)),
                    body_format=NotifyFormat.TEXT,
                )
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a plugin bug must not take down the dispatcher
            reason = entry.url.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_LEN]
            log.warning("notify.crashed", url_key=url_key, error=reason)
            return SendResult(ok=False, error=reason)
        with result:
            ok = bool(result)
            uncertain = not ok and _unanswered(result, entry.answer_timeout_s)
            error = None if ok else _reason(result, entry.url)
            elapsed = round(float(result.elapsed), 3)
        if uncertain:
            error = f"no answer within {entry.answer_timeout_s:g} s, maybe delivered: {error}"
            error = error[:MAX_ERROR_LEN]
        if ok:
            log.debug("notify.sent", url_key=url_key, elapsed_s=elapsed)
        else:
            log.info(
                "notify.failed",
                url_key=url_key,
                elapsed_s=elapsed,
                maybe_delivered=uncertain,
                error=error,
            )
        return SendResult(ok=ok, error=error, uncertain=uncertain)

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


def _entry(url: NotifyUrl, apobj: apprise.Apprise) -> _Entry:
    """Apply the URL's send timeout to its plugin and work out its time limits.

    The send timeout becomes the plugin's socket read timeout unless the URL sets
    ``rto`` itself. E-mail plugins use one socket timeout (``cto``) for the whole SMTP
    session, so for them it becomes that one unless the URL sets ``cto``.
    """
    plugin = apobj[0]
    given = _query_keys(url.url)
    email = _is_email(plugin)
    if email:
        if "cto" not in given:
            plugin.socket_connect_timeout = url.send_timeout_s
        answer = float(plugin.socket_connect_timeout)
    else:
        if "rto" not in given:
            plugin.socket_read_timeout = url.send_timeout_s
        answer = float(plugin.socket_read_timeout)
    attempts = 1 + int(getattr(plugin, "retry", 0) or 0)
    per_attempt = (
        float(plugin.socket_connect_timeout)
        + answer
        + float(getattr(plugin, "request_rate_per_sec", 0) or 0)
    )
    waits = (attempts - 1) * float(getattr(plugin, "wait", 0) or 0)
    return _Entry(
        url=url,
        apobj=apobj,
        answer_timeout_s=answer,
        worst_case_s=attempts * per_attempt + waits + _STUCK_MARGIN_S,
        worker=SerialWorker(f"notify-{url.key}"),
    )


def _is_email(plugin: Any) -> bool:
    from apprise.plugins.email.base import NotifyEmail  # noqa: PLC0415  (loaded with apprise)

    return isinstance(plugin, NotifyEmail)


def _query_keys(url: str) -> set[str]:
    """The lower-cased query keys of a URL (``rto``, ``cto``, ...), without values."""
    _, _, query = url.partition("?")
    return {pair.partition("=")[0].strip().lower() for pair in query.split("&") if pair}


def _unanswered(result: Any, answer_timeout_s: float) -> bool:
    """Whether a failed call's last attempt waited out the answer timeout.

    A refused connection, a DNS error or an HTTP error status comes back sooner; an
    attempt that took the whole read timeout sent its request and got no answer, so
    the service may have the message. apprise logs the difference only at DEBUG,
    which the watcher's logging drops, so the attempt's duration is what tells.
    """
    threshold = answer_timeout_s * 0.95
    for notify_result in result:
        if notify_result.status == AppriseResultStatus.TIMEOUT:
            return True
        attempts = list(getattr(notify_result, "attempts", ()) or ())
        elapsed = float(attempts[-1].elapsed) if attempts else float(notify_result.elapsed)
        if notify_result.status != AppriseResultStatus.SUCCESS and elapsed >= threshold:
            return True
    return False


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
