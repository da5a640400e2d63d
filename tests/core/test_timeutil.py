"""The one set of UTC helpers: naive means UTC, aware converts, and iso/from_iso invert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from watcher.core.timeutil import from_iso, iso, stamp, utc

CEST = timezone(timedelta(hours=2))


def test_utc_takes_naive_as_utc_and_converts_aware() -> None:
    assert utc(datetime(2026, 1, 1, 10, 0)) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    converted = utc(datetime(2026, 1, 1, 12, 0, tzinfo=CEST))
    assert converted.tzinfo is UTC and converted.hour == 10


def test_iso_always_writes_utc_and_from_iso_reads_it_back() -> None:
    moment = datetime(2026, 1, 1, 12, 0, 30, 5, tzinfo=CEST)
    assert iso(moment) == "2026-01-01T10:00:30.000005+00:00"
    assert iso(datetime(2026, 1, 1, 10, 0)) == "2026-01-01T10:00:00+00:00"  # naive is UTC
    assert from_iso(iso(moment)) == moment
    assert iso(None) is None


@pytest.mark.parametrize("text", [None, "", 5, {}])
def test_from_iso_ignores_what_is_not_a_timestamp_string(text: object) -> None:
    assert from_iso(text) is None


def test_from_iso_is_loud_on_a_corrupt_string() -> None:
    with pytest.raises(ValueError, match="yesterday"):
        from_iso("yesterday")


def test_stamp_is_utc_and_has_no_colon() -> None:
    assert stamp(datetime(2026, 1, 2, 5, 4, 5, 6, tzinfo=CEST)) == "20260102T030405.000006Z"
