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
