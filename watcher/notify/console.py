"""A ``console://`` notification scheme that prints each message to stdout.

Apprise has no built-in stdout target (LIBRARIES.md 1.10). ``demo`` and debugging
sessions add ``console://`` to see every notification as it is delivered. Apprise
schemes are process-global and cannot be redefined, so registration is idempotent:
``register()`` may be called by every sender that is built.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from apprise import NotifyFormat
from apprise.decorators import notify
from apprise.manager_plugins import NotificationManager

from watcher import textsafe

SCHEME = "console"

_lock = threading.Lock()


def _print(body: str, title: str, notify_type: str, *args: Any, **kwargs: Any) -> bool:
    """Print one notification; runs in one of apprise's worker threads."""
    tag = f"[{textsafe.inert(notify_type).upper()}]"
    # The text carries cloud strings: inert here too, whatever rendered it (LIBRARIES 1.10).
    title = textsafe.inert(title)
    body = textsafe.inert(body, multiline=True)
    # Our default titles already start with the severity tag; do not print it twice.
    lines = [title if title.startswith(tag) else f"{tag} {title}".rstrip()]
    if body:
        lines.append(body.rstrip("\n"))
    text = "\n".join(lines) + "\n"
    # One write per message so concurrent deliveries do not interleave line by line.
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return True


def register() -> None:
    """Register the ``console://`` scheme once per process (later calls do nothing)."""
    with _lock:
        if SCHEME in NotificationManager():  # type: ignore[no-untyped-call]
            return
        decorator = notify(  # type: ignore[no-untyped-call]
            on=SCHEME, name="Console (stdout)", body_format=NotifyFormat.TEXT
        )
        decorator(_print)
