"""Logging setup: one structlog pipeline for our events and every stdlib logger, secrets redacted.

Why this module exists: the daemon runs under journald, in containers and on a terminal, and
the libraries it drives (apprise, aiohttp, APScheduler, asyncio) log through the stdlib. All of
them must come out in one format (JSON when stderr is not a TTY, readable lines when it is) and
none of them may print a credential: apprise prints some URL parts in clear, exception messages
can quote a URL, and a token can sit in a query string (LIBRARIES.md 1.13, 4.1, 4.3).

Redaction runs twice: in the shared chain (so structlog events and foreign stdlib records are
masked before anything else sees them) and once more after the exception renderer, because a
traceback or an exception message is only turned into text at the end of the pipeline.
Tracebacks never carry local variables. On the console renderer, which prints values raw,
strings are also made inert (watcher.textsafe): a cluster name cannot drive the terminal.

`configure_logging` is meant to run once, first thing in `main()`: structlog caches a logger on
its first use, so processors configured later do not reach loggers already used. The renderer
and the stream live in the stdlib handler, so a second call still redirects output.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from io import StringIO
from typing import Any, Literal, TextIO

import structlog
from structlog.dev import plain_traceback
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, ExcInfo, Processor, WrappedLogger

from watcher import redact as redact_rules
from watcher import textsafe

__all__ = [
    "MASK",
    "configure_logging",
    "redact",
    "redact_text",
    "redact_value",
    "register_secret",
    "url_secrets",
]

MASK = redact_rules.MASK
Format = Literal["auto", "json", "console"]

# Keys the pipeline needs intact: ProcessorFormatter metadata and the exception carriers.
_KEEP_KEYS = frozenset({"exc_info", "stack_info"})
_PRIMITIVES = (str, int, float, bool, type(None))
_QUIET_LOGGERS = {
    "apscheduler.executors.default": logging.WARNING,  # one line per job run otherwise
    "aiohttp.access": logging.WARNING,  # probes every few seconds
}

_lock = threading.Lock()
# Configured secrets stay for the life of the process. Refreshed credentials (IAM tokens,
# agency keys) keep arriving, so only the newest of those are kept: older ones expired.
_pinned: set[str] = set()
_transient: dict[str, None] = {}
_MAX_TRANSIENT = 64
_secret_pattern: re.Pattern[str] | None = None
_handler: logging.Handler | None = None


def register_secret(value: str | None, *, transient: bool = False) -> None:
    """Mask every later occurrence of `value` (and its URL-encoded forms) in log output.

    Call it as soon as a secret exists: config secrets at start-up, a fresh IAM token when it
    arrives (``transient=True``: only the newest transient secrets are kept, so a daemon that
    refreshes credentials for months does not grow its redaction pattern without bound).
    Values shorter than three characters are ignored (they would mask ordinary text).
    """
    global _secret_pattern  # noqa: PLW0603 -- one registry per process, like the log handler
    if not value or len(value) < redact_rules.MIN_SECRET_LEN:
        return
    if value in _pinned or (transient and value in _transient):
        return
    with _lock:
        if transient:
            _transient[value] = None
            while len(_transient) > _MAX_TRANSIENT:
                del _transient[next(iter(_transient))]
        else:
            _pinned.add(value)
            _transient.pop(value, None)
        _secret_pattern = redact_rules.known_secrets_pattern([*_pinned, *_transient])


def url_secrets(url: str) -> list[str]:
    """The parts of a notification URL to register as secrets (see watcher.redact)."""
    return redact_rules.url_secrets(url)


def redact_text(text: str) -> str:
    """Mask registered secrets and every secret-shaped value (watcher.redact) in free text."""
    return redact_rules.redact_text(text, pattern=_secret_pattern)


def redact_value(value: Any, *, stringify: bool = False) -> Any:
    """Redact a log value: recurse into containers, mask secret keys, scrub strings.

    With `stringify`, objects that are neither primitives nor containers are replaced by their
    redacted repr: that is what both renderers would print anyway, and a repr can quote a secret.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v, stringify=stringify) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact_value(v, stringify=stringify) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if stringify and not isinstance(value, _PRIMITIVES):
        return redact_text(repr(value))
    return value


def _redact_item(key: Any, value: Any, *, stringify: bool) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if redact_rules.SECRET_KEY.search(str(key)):
        return MASK
    return redact_value(value, stringify=stringify)


def _redact_event(event_dict: EventDict, *, stringify: bool) -> EventDict:
    for key, value in event_dict.items():
        if key.startswith("_") or key in _KEEP_KEYS:
            continue
        event_dict[key] = _redact_item(key, value, stringify=stringify)
    return event_dict


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor for the shared chain: structlog events and foreign stdlib records."""
    return _redact_event(event_dict, stringify=False)


def _redact_final(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor right before the renderer: also covers rendered tracebacks and reprs."""
    return _redact_event(event_dict, stringify=True)


def _inert_console(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Console lines print values raw (JSON escapes them): make cloud text inert there."""
    for key, value in event_dict.items():
        if isinstance(value, str) and not key.startswith("_"):
            event_dict[key] = textsafe.inert(value, multiline=key == "exception")
    return event_dict


def _redacted_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """ConsoleRenderer's exception formatter: a plain traceback (no locals), redacted."""
    buf = StringIO()
    plain_traceback(buf, exc_info)
    sio.write(redact_text(buf.getvalue()))


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]


def configure_logging(
    level: str | int = "info",
    fmt: Format = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route structlog and every stdlib logger through one redacting pipeline to `stream`.

    `fmt="auto"` picks JSON unless `stream` (default: sys.stderr) is a terminal. `secrets` are
    registered with `register_secret`. Replaces the handler installed by an earlier call; other
    handlers on the root logger (pytest's caplog, for one) are left alone.
    """
    global _handler  # noqa: PLW0603 -- the one handler this module owns on the root logger
    out = sys.stderr if stream is None else stream
    for secret in secrets:
        register_secret(secret)
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    use_json = fmt == "json" or (fmt == "auto" and not _isatty(out))

    shared = _shared_processors()
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if use_json:
        final += [
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            _redact_final,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final += [
            _redact_final,
            _inert_console,
            structlog.dev.ConsoleRenderer(
                colors=_isatty(out), exception_formatter=_redacted_traceback
            ),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)

    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    with _lock:
        if _handler is not None:
            root.removeHandler(_handler)
        root.addHandler(handler)
        _handler = handler
    root.setLevel(numeric_level)
    for name, quiet_level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet_level, numeric_level))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
