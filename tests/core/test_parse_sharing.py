"""Parsing shares immutable values across polls (issue 12): equal raw points parse to the
very same Point, and a repeated timestamp is parsed once; odd values still parse the slow,
checked way and never poison the cache."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.core.models import Point, Workflow
from watcher.core.timeparse import parse_timestamp

RAW = {
    "taskType": "Cluster",
    "taskID": "6d799ff6-3afe-4242-80b4-6f0a0fa746cb",
    "status": "Running",
    "startTimeStamp": "2023-11-25 07:49:30.283459 +0000 UTC",
}


def test_equal_raw_points_share_one_parsed_point() -> None:
    a, b = Point.from_api(dict(RAW)), Point.from_api(dict(RAW))
    assert a is b
    assert a.started_at == datetime(2023, 11, 25, 7, 49, 30, 283459, tzinfo=UTC)
    changed = Point.from_api({**RAW, "status": "Success"})
    assert changed is not a and changed.status == "Success"


def test_odd_values_are_parsed_uncached_and_leniently() -> None:
    odd = Point.from_api({**RAW, "status": 7, "startTimeStamp": ["x"]})
    assert odd.status == "7" and odd.started_at is None
    assert Point.from_api(dict(RAW)).status == "Running"


def test_workflows_of_one_body_share_points() -> None:
    body = {"metadata": {"uid": "u1"}, "status": {"pointStatuses": [dict(RAW)]}}
    first, second = Workflow.from_api(body), Workflow.from_api(body)
    assert first.points[0] is second.points[0]


def test_a_repeated_timestamp_returns_the_same_value_and_errors_stay_errors() -> None:
    stamp = "2024-05-01 12:00:00.5 +0800 CST"
    assert parse_timestamp(stamp) is parse_timestamp(stamp)
    for _ in range(2):  # an error is never cached as a value
        with pytest.raises(ValueError, match="unrecognised"):
            parse_timestamp("not a time")
