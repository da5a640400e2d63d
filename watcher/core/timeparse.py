"""Tolerant parsing of the timestamp formats CCE and IAM emit (CCE_API.md 2.5).

The cloud mixes Go's ``time.Time.String()`` (any offset, 0-9 fraction digits, a zone
abbreviation, maybe a monotonic suffix) with RFC 3339, and leaves unset times as the empty
string. Every parsed value is an aware UTC datetime; the offset is authoritative and the
abbreviation is ignored.

Out-of-range dates (Go's year 9999 with a negative offset, its zero time ``0001-01-01``
with a positive one, anything outside ``EARLIEST``..``LATEST``) are "unknown" (None), never
an error: one odd value must not fail a poll, and the range leaves headroom so the engine's
date arithmetic (deadlines, leads, durations) can never overflow either.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone

_GO = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? ([+-])(\d\d)(\d\d)"
    r"(?: [A-Za-z][A-Za-z0-9+-]{0,9})?(?: m=[+-]?\d+(?:\.\d+)?)?$",
    re.ASCII,  # "\d" would also take "２０２４" and other non-ASCII digits
)
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d\d):?(\d\d))?$",
    re.ASCII,
)


# No cloud time is outside this; the margins keep ``moment +/- any policy duration`` valid.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    """A non-empty timestamp string that matches no known format."""


def _micro(fraction: str | None) -> int:
    # Python keeps microseconds; nanosecond digits beyond six are truncated, not rounded,
    # so a parsed time is never later than the cloud's.
    return int((fraction or "0")[:6].ljust(6, "0"))


def _build(parts: tuple[str, ...], fraction: str | None, offset: timedelta) -> datetime | None:
    year, month, day, hour, minute, second = (int(p) for p in parts)
    if second == 60:
        second = 59  # a leap second (23:59:60): the moment before it, not "unknown"
    try:
        local = datetime(
            year, month, day, hour, minute, second, _micro(fraction), tzinfo=timezone(offset)
        )
    except ValueError as exc:
        if year < 1 or year > 9999:  # the calendar is fine, the year is out of range
            return None
        raise TimestampError(str(exc)) from None
    if not EARLIEST <= local <= LATEST:
        return None  # out of range: unknown (comparing aware datetimes cannot overflow)
    return local.astimezone(UTC)


def _offset(sign: str, hours: str, minutes: str) -> timedelta | None:
    # A day or more, or 60+ minutes ("+2500", "+0099"): not a real zone, so not a real time.
    if int(hours) >= 24 or int(minutes) >= 60:
        return None
    return (-1 if sign == "-" else 1) * timedelta(hours=int(hours), minutes=int(minutes))


def parse_timestamp(value: str | None) -> datetime | None:
    """Parse a CCE/IAM timestamp to aware UTC; ``None``, blank or out of range gives ``None``.

    Raises TimestampError for a non-empty string in no known format, so the caller decides
    whether an odd value fails the poll or is carried as unknown.
    """
    if value is None:
        return None
    if not isinstance(value, str):  # a number, list or object where a time belongs
        raise TimestampError(f"timestamp is a {type(value).__name__}, not a string")
    return _parse_text(value)


# The same stamps come back on every poll of a workflow: a datetime is immutable, so the
# parsed value is shared (errors are not cached: lru_cache re-raises them every time).
@functools.lru_cache(maxsize=8192)
def _parse_text(value: str) -> datetime | None:
    text = value.strip()
    if not text:
        return None
    if match := _GO.match(text):
        g = match.groups()
        offset = _offset(g[7], g[8], g[9])
        return None if offset is None else _build(g[:6], g[6], offset)
    if match := _RFC3339.match(text):
        g = match.groups()
        # "Z", or no zone at all: the cloud speaks UTC
        offset = _offset(g[8], g[9], g[10]) if g[8] else timedelta(0)
        return None if offset is None else _build(g[:6], g[6], offset)
    raise TimestampError(f"unrecognised timestamp {text[:64]!r}")


def parse_timestamp_lenient(value: str | None) -> datetime | None:
    """Like parse_timestamp, but an unparseable value is ``None`` instead of an error.

    Used for fields where one odd value must not fail a whole poll (a task's times).
    """
    try:
        return parse_timestamp(value)
    except TimestampError:
        return None


def format_go(moment: datetime) -> str:
    """Render as Go's ``time.Time.String()`` in UTC, the way CCE writes metadata times."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


def format_iam(moment: datetime) -> str:
    """Render as IAM's ``expires_at`` (microseconds are mandatory for the SDK's parser)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
