"""Issue 7 probed as an adversary: variants of each item beyond the issue's own examples.

Every test here failed before its fix. Cloud bodies go through the client's real decoder
and the decoded values through a real SQLite file and a real UTF-8 stream, the edges where
an odd value used to fail every poll or crash ``check``.
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from watcher.cloud.responses import parse_error_body, parse_json_object, parse_retry_after
from watcher.core.cadence import failure_delay
from watcher.core.models import Workflow
from watcher.core.timeparse import TimestampError, parse_timestamp, parse_timestamp_lenient
from watcher.notify.targets import parse_url
from watcher.textsafe import inert

# -- item 2: odd timestamps are "unknown" or a sane value, never an error ---------------


@pytest.mark.parametrize(
    "text",
    [
        "２０２４-01-01T00:00:00Z",  # full-width digits: "\d" took them
        "2024-01-01 00:00:00 +0099 UTC",  # 99 minutes is no offset
        "2024-01-01T00:00:00+01:75",
        "2024-01-01 00:00:00 +2500 UTC",
        "0000-01-01 00:00:00 +0000 UTC",
        "10000-01-01T00:00:00Z",
    ],
)
def test_impossible_timestamps_are_unknown(text: str) -> None:
    assert parse_timestamp_lenient(text) is None


def test_leap_second_is_a_time_not_unknown() -> None:
    assert parse_timestamp("2016-12-31 23:59:60 +0000 UTC") == datetime(
        2016, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert parse_timestamp("2016-12-31T23:59:60Z") is not None


@pytest.mark.parametrize("value", [123, 1.5, True, [], {}])
def test_a_non_string_timestamp_is_a_timestamp_error(value: Any) -> None:
    # Was AttributeError ('int' object has no attribute 'strip'): no caller catches that.
    with pytest.raises(TimestampError):
        parse_timestamp(value)
    assert parse_timestamp_lenient(value) is None


# -- item 2: hostile JSON values never fail the poll, nor any later write ---------------


def _store_roundtrip(tmp_path: Path, value: Any) -> None:
    """Write ``value`` the way the store does (ensure_ascii=False, allow_nan=False)."""
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute(
        "INSERT INTO t VALUES (?)",
        (json.dumps(value, ensure_ascii=False, allow_nan=False),),
    )
    db.commit()
    db.close()


def _workflow_body(name: str, extra: str = "") -> bytes:
    # ``name`` goes in raw (not json.dumps'd) so that a test can write JSON escapes.
    return (
        '{"metadata": {"uid": "wf-1", "name": "' + name + '"' + extra + "},"
        ' "spec": {"clusterID": "c1", "clusterVersion": "v1.28", "targetVersion": "v1.29"},'
        ' "status": {"phase": "Running"}}'
    ).encode()


def test_lone_surrogate_in_a_name_decodes_to_storable_printable_text(tmp_path: Path) -> None:
    # JSON allows "\ud800"; decoded raw it made every store commit and every print fail.
    data = parse_json_object(_workflow_body("prod-\\ud800-\\udfff"), "cce.show_workflow")
    workflow = Workflow.from_api(data)
    assert workflow.name == "prod-\ufffd-\ufffd"
    _store_roundtrip(tmp_path, workflow.model_dump(mode="json"))
    io.TextIOWrapper(io.BytesIO(), encoding="utf-8").write(inert(workflow.name or ""))
    # a valid pair is still one character
    assert parse_json_object(b'{"a": "\\ud83d\\ude00"}', "x") == {"a": "\U0001f600"}
    assert parse_error_body(b'{"error_code": "X", "error_msg": "bad \\ud800"}')[1] == "bad \ufffd"


def test_nan_and_infinity_literals_are_null(tmp_path: Path) -> None:
    data = parse_json_object(_workflow_body("c", ', "x": NaN, "y": [Infinity, -Infinity]'), "w")
    assert data["metadata"]["x"] is None and data["metadata"]["y"] == [None, None]
    _store_roundtrip(tmp_path, data)  # allow_nan=False no longer meets a float nan


def test_a_byte_that_is_not_utf8_does_not_fail_the_poll() -> None:
    body = _workflow_body("prod").replace(b"prod", b"pr\xff\xfeod")
    assert Workflow.from_api(parse_json_object(body, "w")).name == "pr\ufffd\ufffdod"


# -- item 8: invisible and unencodable characters are neutralised ---------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "a\u200bb",  # zero-width space
        "a\u200db",  # zero-width joiner
        "a\u2060b",  # word joiner
        "a\u00adb",  # soft hyphen
        "a\U000e0041\U000e0042b",  # tag characters (invisible ASCII smuggling)
        "a\ufff9b",  # interlinear annotation anchor
        "a\U000e0001b",  # language tag
    ],
)
def test_invisible_format_characters_are_removed(hostile: str) -> None:
    assert inert(hostile) == "ab"
    assert inert(hostile, multiline=True) == "ab"


def test_lone_surrogate_is_replaced_so_output_can_be_encoded() -> None:
    out = inert("a\ud800b")
    assert out == "a\ufffdb"
    out.encode("utf-8")  # stdout, an e-mail body, a log line: all need this


def test_spaces_and_private_use_survive() -> None:
    assert inert("a\u00a0b\ue000c") == "a\u00a0b\ue000c"
    assert inert("x\ny\tz", multiline=True) == "x\ny\tz"


# -- item 9: a secret in a URL fragment is masked --------------------------------------


def test_secret_in_url_fragment_is_masked() -> None:
    url = parse_url("json://example.com/hook#fragSECRETvalue1")
    assert "fragSECRETvalue1" in url.secrets
    assert "fragSECRETvalue1" not in url.redact("POST failed for #fragSECRETvalue1")
    assert "fragSECRETvalue1" not in url.display


def test_public_fragment_channel_stays_readable() -> None:
    url = parse_url("rockets://user:rcPASS12@rocket.example.com/#channel")
    assert url.redact("sent to #channel") == "sent to #channel"


# -- item 3: a Retry-After too large for a float is capped, not ignored ---------------


@pytest.mark.parametrize("header", ["9" * 400, "1e309", "1" + "0" * 309])
def test_retry_after_beyond_float_range_waits_the_maximum(header: str) -> None:
    # "1e300" waited max_backoff_s while a larger (RFC-valid, all digits) value was
    # dropped as garbage, so the server's "slow down" was ignored and the next try came
    # after the ordinary 1 s backoff.
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert failure_delay(1, 1.0, 300.0, 0.5, retry_after=seconds) == 300.0
    assert failure_delay(1, 1.0, 300.0, 0.5, retry_after=parse_retry_after("1e300")) == 300.0


@pytest.mark.parametrize("header", ["nan", "inf", "-Infinity", "", "  ", "5, 10", "0x10", "soon"])
def test_retry_after_garbage_is_ignored(header: str) -> None:
    assert parse_retry_after(header) is None
