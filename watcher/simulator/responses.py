"""Response builders in the cloud's own error formats (CCE_API.md 3).

CCE answers camelCase ``errorCode``/``errorMessage``; the API gateway answers snake_case
``error_code``/``error_msg`` with a ``request_id``; IAM answers a Keystone-style ``error``
object. Handlers raise CceError; the server's middleware renders it with the request id.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from watcher.simulator.state import dumps

JSON = "application/json"

CCE_CODES = {
    400: ("CCE.01400001", "Invalid request."),
    401: ("CCE.01401001", "Authorization failed."),
    403: ("CCE.01403001", "Forbidden."),
    404: ("CCE.01404001", "Resource not found."),
    409: ("CCE.01409001", "Resource already exists."),
    429: ("CCE.01429002", "Resource locked by other requests."),
    500: ("CCE.01500001", "Internal error."),
}


class CceError(Exception):
    """An error CCE itself would answer (not the gateway)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        code, default = CCE_CODES.get(status, CCE_CODES[500])
        super().__init__(message or default)
        self.status = status
        self.code = code
        self.message = message or default


def not_found(kind: str, ident: str) -> CceError:
    return CceError(404, f"Resource not found: {kind} {ident} does not exist.")


def json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


def json_response(value: Any, status: int = 200) -> web.Response:
    return json_bytes(dumps(value), status)


def cce_error(status: int, code: str, message: str) -> web.Response:
    return json_response({"errorCode": code, "errorMessage": message}, status)


def gateway_error(status: int, code: str, message: str, request_id: str) -> web.Response:
    return json_response(
        {"error_code": code, "error_msg": message, "request_id": request_id}, status
    )


def iam_error(status: int, title: str, message: str) -> web.Response:
    return json_response({"error": {"code": status, "message": message, "title": title}}, status)
