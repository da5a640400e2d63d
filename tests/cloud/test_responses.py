"""Error bodies, Retry-After and status mapping, for every format the cloud uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from watcher.cloud.responses import (
    api_error,
    json_depth_exceeds,
    parse_error_body,
    parse_json_object,
    parse_retry_after,
)
from watcher.core.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    NotFoundError,
    ServerError,
    ThrottledError,
    WorkflowGoneError,
)


def _b(data: object) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (
            _b({"errorCode": "CCE.01404001", "errorMessage": "Resource not found"}),
            {"X-Request-Id": "rid-1"},
            ("CCE.01404001", "Resource not found", "rid-1"),
        ),
        (
            _b(
                {
                    "error_code": "APIGW.0301",
                    "error_msg": "verify aksk signature fail",
                    "request_id": "rid-2",
                }
            ),
            {},
            ("APIGW.0301", "verify aksk signature fail", "rid-2"),
        ),
        (
            _b(
                {
                    "errorCode": "CCE.01400001",
                    "errorMessage": "Invalid request",
                    "message": "spec.x is bad",
                }
            ),
            {"x-request-id": "rid-3"},
            ("CCE.01400001", "Invalid request, spec.x is bad", "rid-3"),
        ),
        (_b({"kind": "Status", "message": "not found"}), {}, (None, "not found", None)),
        (
            _b(
                {
                    "error": {
                        "code": 401,
                        "title": "Unauthorized",
                        "message": "The username or password is wrong.",
                    }
                }
            ),
            {},
            ("401", "The username or password is wrong.", None),
        ),
        (b"<html>bad gateway</html>", {"X-Request-Id": "rid-4"}, (None, "", "rid-4")),
        (b"", {}, (None, "", None)),
        (b"[1, 2]", {}, (None, "", None)),
        (
            _b({"errorCode": "C", "errorMessage": "same", "message": "same"}),
            {},
            ("C", "same", None),
        ),
    ],
)
def test_parse_error_body(
    body: bytes, headers: dict[str, str], expected: tuple[str | None, str, str | None]
) -> None:
    assert parse_error_body(body, CIMultiDict(headers)) == expected


def test_parse_error_body_shortens_huge_messages() -> None:
    _, message, _ = parse_error_body(_b({"errorMessage": "x" * 10_000}))
    assert len(message) <= 300


NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("Tue, 02 Jan 2024 03:04:15 GMT", 10.0),
        ("Tue, 02 Jan 2024 03:00:00 GMT", 0.0),  # in the past
        ("soon", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("status", "code", "workflow", "cls"),
    [
        (401, "APIGW.0301", False, AuthError),
        (403, "CCE.01403001", False, AuthError),
        (404, "CCE.01404001", True, WorkflowGoneError),
        (404, None, True, WorkflowGoneError),
        (404, "APIGW.0101", True, NotFoundError),  # wrong endpoint, not a vanished workflow
        (404, "APIG.0101", True, NotFoundError),
        (404, "CCE.01404001", False, NotFoundError),
        (429, "CCE.02429001", False, ThrottledError),
        (500, "CCE.01500001", False, ServerError),
        (502, "APIGW.0202", False, ServerError),
        (400, "CCE.01400001", False, ApiError),
        (409, "CCE.01409001", False, ApiError),
    ],
)
def test_api_error_type(status: int, code: str | None, workflow: bool, cls: type) -> None:
    err = api_error(status, code, "m", "rid", retry_after=1.0, workflow=workflow)
    assert type(err) is cls
    assert err.status == status and err.code == code and err.request_id == "rid"


def test_throttled_carries_retry_after() -> None:
    err = api_error(429, None, "", None, retry_after=3.0)
    assert isinstance(err, ThrottledError) and err.retry_after == 3.0


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"[]", b"42", b'"s"'])
def test_parse_json_object_rejects(body: bytes) -> None:
    with pytest.raises(BadResponseError):
        parse_json_object(body, "route")


def _nest(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    objects = st.dictionaries(st.text(max_size=3), children, max_size=3)
    return st.lists(children, max_size=3) | objects


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


# -- issue 7: deep nesting is a BadResponseError, Retry-After never raises ----------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,  # RecursionError inside json.loads before
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"x": ' + b"[" * 65 + b"]" * 65 + b"}",
    ],
)
def test_deep_nesting_is_a_bad_response(body: bytes) -> None:
    assert json_depth_exceeds(body)
    with pytest.raises(BadResponseError, match="deeper than"):
        parse_json_object(body, "route")
    assert parse_error_body(body) == (None, "", None)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "' + b"[" * 5000 + b'"}',  # brackets inside a string do not nest
        b'{"a": "\\"[[[[", "b": ' + b"[" * 60 + b"]" * 60 + b"}",
        b'{"list": [' + b"[1]," * 5000 + b"[2]]}",  # wide, not deep
    ],
)
def test_wide_or_quoted_brackets_are_fine(body: bytes) -> None:
    assert not json_depth_exceeds(body)
    assert isinstance(parse_json_object(body, "route"), dict)


@settings(max_examples=300)
@given(st.recursive(st.none() | st.integers() | st.text(max_size=5), _nest, max_leaves=40))
def test_depth_check_agrees_with_the_real_depth(value: object) -> None:
    body = json.dumps(value).encode()
    assert json_depth_exceeds(body, limit=3) == (_depth(value) > 3)


@given(st.text(max_size=400))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, NOW)
    assert result is None or result >= 0.0


@pytest.mark.parametrize(
    "value",
    ["1e300", "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 -2359"],
)
def test_huge_retry_after_is_a_number_the_caller_caps(value: str) -> None:
    result = parse_retry_after(value, NOW)
    assert result is None or result >= 0.0
