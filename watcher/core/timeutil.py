"""The one set of UTC helpers: every module that normalises, stores or parses a moment uses
these, so "naive means UTC" and "always convert to UTC" hold everywhere (issue 8: the copies
differed in whether they converted). Pure: no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["from_iso", "iso", "stamp", "utc"]


def utc(moment: datetime) -> datetime:
    """Aware UTC; a naive moment is taken to be UTC (never the machine's local time)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC (``2026-01-01T10:00:00+00:00``); None for None."""
    return utc(moment).isoformat() if moment else None


def from_iso(text: Any) -> datetime | None:
    """The inverse of ``iso``: aware UTC, None for anything that is not a non-empty string.

    Raises ValueError for a string that is not ISO 8601 (a corrupt stored value is loud).
    """
    if not isinstance(text, str) or not text:
        return None
    return utc(datetime.fromisoformat(text))


def stamp(moment: datetime) -> str:
    """A compact UTC stamp for dedup keys: ``20260101T100000.000000Z`` (no ``:``)."""
    return utc(moment).strftime("%Y%m%dT%H%M%S.%fZ")
