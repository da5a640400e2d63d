"""The runtime notification URL value (``NotifyUrl``), free of apprise.

Kept apart from ``targets`` (which parses URLs with apprise) so that the pure routing and
link code can name the one URL type without importing apprise. The config layer's
``NotifyUrlSetting`` is the *input* form; ``targets.build_urls`` turns it into these.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from watcher import redact
from watcher.core.ports import DEFAULT_SEND_TIMEOUT_S

Flavor = Literal["chat", "email"]
FLAVORS: tuple[Flavor, ...] = ("chat", "email")
EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(url: str) -> str | None:
    """The lower-cased scheme of an apprise URL, or None when it has none."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def default_flavor(url: str) -> Flavor:
    """``email`` for mailto/mailtos URLs, ``chat`` for everything else."""
    return "email" if url_scheme(url) in EMAIL_SCHEMES else "chat"


@dataclass(frozen=True, slots=True)
class NotifyUrl:
    """One apprise service the watcher delivers to.

    ``url`` is secret: it is excluded from repr and never logged. ``display`` is the
    masked form for humans (``notify-test``, ``config show``), ``secrets`` the substrings
    that redaction must remove from anything printed about this URL. ``send_timeout_s``
    is how long one attempt waits for the service's answer (the sender applies it).
    """

    key: str
    url: str = field(repr=False)
    tags: frozenset[str] = frozenset()
    flavor: Flavor = "chat"
    display: str = ""
    secrets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S

    @property
    def scheme(self) -> str:
        return url_scheme(self.url) or ""

    def redact(self, text: str) -> str:
        """``text`` with every secret of this URL masked."""
        return redact.redact_text(text, {self.url, *self.secrets})


def key_moves(old: Sequence[NotifyUrl], new: Sequence[NotifyUrl]) -> dict[str, str]:
    """Old key -> new key for every URL that is still configured but under another key.

    A URL is the same URL when its full (secret) URL string is exactly equal; naming,
    renaming or reordering URLs changes only keys (an unnamed URL's key is positional,
    ``json-1``), and deliveries are stored by key. A URL string listed more than once on
    either side is ambiguous and never moved.
    """
    old_counts = Counter(u.url for u in old)
    new_counts = Counter(u.url for u in new)
    new_keys = {u.url: u.key for u in new if new_counts[u.url] == 1}
    return {
        u.key: new_keys[u.url]
        for u in old
        if old_counts[u.url] == 1 and u.url in new_keys and new_keys[u.url] != u.key
    }
