"""Error bodies, Retry-After and status mapping, for every format the cloud uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict

from watcher.cloud.responses import (
    api_error,
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
