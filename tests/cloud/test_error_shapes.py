"""Error bodies in every shape the CCE and core SDK handlers accept (issue 9 item 4).

The SDK's own handlers are the oracle: each body is fed to ``DefaultExceptionHandler`` /
``CceExceptionHandler`` and our parse must agree on code and message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from huaweicloudsdkcce.v3.cce_exception_handler import CceExceptionHandler
from huaweicloudsdkcore.exceptions.exception_handler import DefaultExceptionHandler
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from watcher.cloud import responses
from watcher.core.errors import AuthError


class _Resp:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self.text = json.dumps(body)
        self.content = self.text.encode()
        self.headers = {"X-Request-Id": "req-1"}


def _sdk(handler: Any, status: int, body: dict[str, Any]) -> SdkException:
    with pytest.raises(SdkException) as info:
        handler.handle_exception(None, _Resp(status, body))
    return info.value


@pytest.mark.parametrize(
    "body",
    [
        {"error_code": "APIGW.0301", "error_msg": "verify aksk signature fail"},
        {"errorCode": "CCE.01400001", "errorMsg": "Invalid request"},
        {"code": "CCE.01404001", "message": "workflow not found"},
        {"error": {"code": "IAM.0001", "message": "nested"}},
    ],
)
def test_core_handler_shapes_agree_with_the_sdk(body: dict[str, Any]) -> None:
    sdk = _sdk(DefaultExceptionHandler(), 400, body)
    code, message, _ = responses.parse_error_body(json.dumps(body).encode())
    assert (code, message) == (sdk.error_code, sdk.error_msg)


def test_cce_handler_appends_the_k8s_message_like_the_sdk() -> None:
    body = {"errorCode": "CCE.01400001", "errorMessage": "Invalid request", "message": "bad id"}
    sdk = _sdk(CceExceptionHandler(), 400, body)
    code, message, _ = responses.parse_error_body(json.dumps(body).encode())
    assert (
        (code, message)
        == (sdk.error_code, sdk.error_msg)
        == (
            "CCE.01400001",
            "Invalid request, bad id",
        )
    )


def test_a_403_keeps_the_encoded_authorization_message() -> None:
    body = {
        "error_code": "APIGW.0302",
        "error_msg": "IAM user not authorized",
        "encoded_authorization_message": "ENC-abc123",
    }
    sdk = _sdk(DefaultExceptionHandler(), 403, body)
    raw = json.dumps(body).encode()
    assert responses.encoded_authorization(raw) == sdk.encoded_auth_msg == "ENC-abc123"
    code, message, rid = responses.parse_error_body(raw)
    error = responses.api_error(
        403, code, message, rid, encoded_authorization_message=responses.encoded_authorization(raw)
    )
    assert isinstance(error, AuthError)
    assert error.encoded_authorization_message == "ENC-abc123"
    assert "encoded_authorization_message: ENC-abc123" in str(error)
