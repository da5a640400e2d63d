"""Every timestamp format of CCE_API.md 2.5 parses to the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher.core.timeparse import (
    TimestampError,
    format_go,
    format_iam,
    parse_timestamp,
    parse_timestamp_lenient,
)

BASE = datetime(2023, 11, 25, 7, 20, 4, 592972, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-25 07:20:04.592972 +0000 UTC", BASE),
        ("2023-11-25 15:20:04.592972 +0800 CST", BASE),
        ("2023-11-25 07:20:04.592972123 +0000 UTC", BASE),
        ("2023-11-25 07:20:04.592972 +0000 UTC m=+123.456", BASE),
        ("2023-11-25 02:20:04.592972 -0500 EST", BASE),
        ("2023-11-25 07:20:04 +0000 UTC", BASE.replace(microsecond=0)),
        ("2023-11-25 07:20:04.5 +0000 UTC", BASE.replace(microsecond=500000)),
        ("2023-11-25 07:20:04.592972 +0000", BASE),
        ("2023-11-25T07:20:04.592972Z", BASE),
        ("2023-11-25T07:20:04Z", BASE.replace(microsecond=0)),
        ("2023-11-25T09:20:04.592972+02:00", BASE),
        ("2023-11-25T07:20:04.592972", BASE),
        ("  2023-11-25T07:20:04.592972Z ", BASE),
    ],
)
def test_known_formats_parse_to_utc(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", [None, "", "   "])
def test_empty_is_none(text: str | None) -> None:
    assert parse_timestamp(text) is None


@pytest.mark.parametrize("text", ["yesterday", "2023-13-01T00:00:00Z", "2023-11-25 07:20"])
def test_garbage_raises_but_lenient_gives_none(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(text)
    assert parse_timestamp_lenient(text) is None


moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(moments)
def test_go_and_iam_renderings_round_trip(moment: datetime) -> None:
    assert parse_timestamp(format_go(moment)) == moment
    assert parse_timestamp(format_iam(moment)) == moment


@given(moments, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_any_offset_is_authoritative(moment: datetime, minutes: int) -> None:
    offset = timedelta(minutes=minutes)
    local = moment + offset
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    text = local.strftime("%Y-%m-%d %H:%M:%S.%f") + f" {sign}{hh:02d}{mm:02d} XYZ"
    assert parse_timestamp(text) == moment


# -- issue 7: out-of-range dates are unknown, never an error ------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31 23:59:59 -0100 UTC",  # UTC would be year 10000: OverflowError before
        "0001-01-01 00:00:00 +0100 UTC",  # UTC would be year 0
        "0001-01-01 00:00:00 +0000 UTC",  # Go's zero time
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "1899-12-31T23:59:59Z",
        "2023-11-25 07:20:04 +9959 XYZ",  # an offset of four days is no zone
        "2023-11-25T07:20:04-99:00",
    ],
)
def test_out_of_range_is_unknown_never_raises(text: str) -> None:
    assert parse_timestamp(text) is None
    assert parse_timestamp_lenient(text) is None


@given(
    year=st.integers(0, 9999),
    month=st.integers(1, 12),
    day=st.integers(1, 28),
    hours=st.integers(0, 99),
    minutes=st.integers(0, 99),
    sign=st.sampled_from("+-"),
    go=st.booleans(),
)
def test_any_year_and_offset_parses_or_is_unknown(
    year: int, month: int, day: int, hours: int, minutes: int, sign: str, go: bool
) -> None:
    if go:
        text = f"{year:04d}-{month:02d}-{day:02d} 12:00:00 {sign}{hours:02d}{minutes:02d} UTC"
    else:
        text = f"{year:04d}-{month:02d}-{day:02d}T12:00:00{sign}{hours:02d}:{minutes:02d}"
    parsed = parse_timestamp_lenient(text)
    if parsed is not None:
        # Whatever parsed leaves room for the engine's arithmetic.
        assert parsed + timedelta(days=3650) > parsed - timedelta(days=3650)
        assert parsed.tzinfo is UTC
