"""The runtime notification URL value (``NotifyUrl``), free of apprise.

Kept apart from ``targets`` (which parses URLs with apprise) so that the pure routing and
link code can name the one URL type without importing apprise. The config layer's
``NotifyUrlSetting`` is the *input* form; ``targets.build_urls`` turns it into these.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Mapping, Sequence
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


def follow_keys(
    old: Mapping[str, str], new: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Which pending queues must move when URL keys change, and the record to keep.

    ``old`` and ``new`` map URL key -> fingerprint (``url_fingerprints``): what each key
    stood for when the outbox was filled (the store's record) and what it stands for now.
    Deliveries are stored by key, and an unnamed URL's key is positional (``json-1``), so
    naming, renaming or reordering URLs changes keys, at a reload or across a restart.

    - A URL still configured under another key: its queue moves to the new key. Swaps and
      chains are fine (the store applies all moves at once).
    - A URL no longer configured: its queue is parked under ``gone-<fingerprint>``, a key
      no URL has, so a URL that takes its old key never receives its messages. Parked
      deliveries fail as "unknown notification URL key" until ``max_age`` dead-letters
      them; if the URL comes back, its queue moves back to it.
    - A fingerprint listed under two keys on either side is ambiguous and never moved.

    Returns ``(moves, record)``: old key -> new key, and the key -> fingerprint map to
    store with them (the current keys plus the parked ones).
    """
    old_counts = Counter(old.values())
    new_counts = Counter(new.values())
    new_keys = {ident: key for key, ident in new.items() if new_counts[ident] == 1}
    moves: dict[str, str] = {}
    record = dict(new)
    for key, ident in old.items():
        if ident in new_counts:
            if old_counts[ident] == 1 and ident in new_keys and new_keys[ident] != key:
                moves[key] = new_keys[ident]
            continue
        parked = f"gone-{ident[:16]}"
        record[parked] = ident
        if key != parked:
            moves[key] = parked
    return moves, record


def url_fingerprints(urls: Sequence[NotifyUrl], salt: str) -> dict[str, str]:
    """Key -> HMAC-SHA256 of the URL under a random per-store salt.

    Stored so a restart can tell which key each URL had when the outbox was filled (a
    reordered list moves positional keys) without storing the URL, which is a secret: the
    salt defeats precomputed tables, and a webhook token is not guessable from its hash.
    """
    secret = salt.encode()
    return {u.key: hmac.new(secret, u.url.encode(), hashlib.sha256).hexdigest() for u in urls}
