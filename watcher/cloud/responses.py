"""Reading and classifying HTTP answers from CCE, IAM and the API gateway.

Shared by the client and the credential providers so both read bodies under the same size
cap and turn error answers into the same ``watcher.core.errors`` types. Everything except
``read_capped`` is a pure function, tested by tables.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from watcher.core.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    NotFoundError,
    ServerError,
    ThrottledError,
    WorkflowGoneError,
)

CHUNK = 64 * 1024
ERROR_BODY_CAP = 64 * 1024  # error bodies are small; anything longer is truncated, not fatal
_MESSAGE_LIMIT = 300
# Real CCE bodies nest about 6 deep; json.loads recurses once per level (RecursionError
# near 1,000) and every consumer after it recurses too, so anything deeper is refused first.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SAME_BRACKETS = bytes.maketrans(b"{}", b"[]")
# JSON may escape half a surrogate pair ("\ud800"); Python decodes it to a lone surrogate
# that no UTF-8 edge accepts (SQLite, stdout, an HTTP body) and every later write fails.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs first


async def read_capped(
    response: aiohttp.ClientResponse, cap: int, *, truncate: bool = False
) -> bytes:
    """Read the body, counting decompressed bytes; over ``cap`` raise or (``truncate``) cut.

    Content-Length (the compressed size when the body is encoded) is checked first, then the
    stream, which is what stops a gzip bomb.
    """
    declared = response.content_length
    if declared is not None and declared > cap and not truncate:
        raise BadResponseError(f"response body of {declared} bytes exceeds the {cap}-byte cap")
    if declared is not None and declared <= cap and "Content-Encoding" not in response.headers:
        # Plain body of a known, allowed size (the common case): one read, no chunk loop.
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > cap:
            if truncate:
                chunks.append(chunk[: len(chunk) - (size - cap)])
                break
            raise BadResponseError(f"response body exceeds the {cap}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON in ``body`` nests arrays/objects deeper than ``limit``.

    Without recursion and in C-speed passes: strings are cut out (their brackets do not
    count), only brackets are kept, then each pass drops the innermost ``[]`` pairs, so
    the text is empty after exactly ``depth`` passes. A malformed body may pass this check;
    json.loads rejects it next.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep
    brackets = _JSON_STRING.sub(b"", body).translate(_SAME_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if not shorter or shorter == brackets:
            return False
        brackets = shorter
    return True


def parse_json_object(body: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object or raise BadResponseError naming ``what`` (never echoing the body)."""
    if json_depth_exceeds(body):
        raise BadResponseError(
            f"{what}: body nests deeper than {MAX_JSON_DEPTH} levels ({len(body)} bytes)"
        )
    try:
        data = _loads(body)
    except (ValueError, RecursionError):  # ValueError includes UnicodeDecodeError
        raise BadResponseError(f"{what}: body is not JSON ({len(body)} bytes)") from None
    if not isinstance(data, dict):
        raise BadResponseError(f"{what}: body is JSON but not an object")
    return data


def _loads(body: bytes) -> Any:
    """json.loads made tolerant of odd values, so one field never fails a whole poll:
    ``NaN``/``Infinity`` (not JSON, but Python accepts them, and no float edge such as the
    store's ``allow_nan=False`` does) are null, a byte that is not UTF-8 is U+FFFD, and a
    lone surrogate in a string or key is U+FFFD."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except UnicodeDecodeError:
        data = json.loads(body.decode("utf-8", "replace"), parse_constant=_no_constant)
    return _no_surrogates(data) if _SURROGATE_ESCAPE.search(body) else data


def _no_constant(_name: str) -> None:
    return None


def _no_surrogates(value: Any) -> Any:
    # Depth is bounded by MAX_JSON_DEPTH (checked before decoding), so recursion is safe.
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_no_surrogates(k): _no_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_surrogates(v) for v in value]
    return value


def _short(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = " ".join(str(value).split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def parse_error_body(
    body: bytes, headers: Mapping[str, str] | None = None
) -> tuple[str | None, str, str | None]:
    """(code, message, request id) from every error shape the CCE and core SDK handlers
    accept (CCE_API.md 3): ``error_code/error_msg``, ``errorCode/errorMessage`` and
    ``errorCode/errorMsg``, ``code/message`` (also a k8s Status), a k8s ``message`` appended
    to a coded message as the CCE handler does, and any of these nested one level down
    (keystone's ``{"error": {"code", "title", "message"}}``). A 403's
    ``encoded_authorization_message`` is read by ``encoded_authorization``. The request id
    prefers the ``X-Request-Id`` header (a CIMultiDict makes the lookup case-insensitive).
    """
    request_id = None
    if headers is not None:
        request_id = headers.get("X-Request-Id") or headers.get("x-request-id")
    data = _json_object(body)
    if data is None:
        return None, "", _short(request_id)
    code, message = _code_and_message(data)
    if code is None and not message:
        for value in data.values():
            if isinstance(value, dict):
                code, message = _code_and_message(value)
                message = message or _short(value.get("title")) or ""
                if code or message:
                    break
    request_id = request_id or data.get("request_id") or data.get("requestId")
    return code, message, _short(request_id)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = _loads(body) if body and not json_depth_exceeds(body) else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _code_and_message(data: Mapping[str, Any]) -> tuple[str | None, str]:
    code = _short(data.get("error_code") or data.get("errorCode") or data.get("code"))
    message = (
        _short(data.get("error_msg") or data.get("errorMessage") or data.get("errorMsg")) or ""
    )
    extra = _short(data.get("message"))
    if extra and extra != message:
        message = f"{message}, {extra}" if message else extra
    return code, message


def encoded_authorization(body: bytes) -> str | None:
    """A 403's ``encoded_authorization_message``: which policy denied the call, encoded for
    an IAM administrator to decode. Not a credential; kept whole on the AuthError."""
    data = _json_object(body)
    value = data.get("encoded_authorization_message") if data else None
    return value if isinstance(value, str) and value else None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (>= 0): delta-seconds or an HTTP date; None if absent or odd.

    Unbounded above (``1e300``, even ``inf``): the caller caps it at its own maximum backoff
    (``cadence.failure_delay``); here only values that are no number at all become None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # A number too large for a float ("1e309", 400 digits: RFC-valid delta-seconds) is
        # +inf, "wait very long", which the caller caps like 1e300. The words "nan" and
        # "inf" that float() also takes are no number of seconds: garbage, None.
        if math.isnan(seconds) or not any(c.isdigit() for c in text):
            return None
        return max(0.0, seconds)
    try:
        moment = parsedate_to_datetime(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def is_gateway_code(code: str | None) -> bool:
    """APIGW.* / APIG.*: the gateway answered, not the service behind it."""
    return bool(code) and (code or "").upper().startswith(("APIGW.", "APIG."))


def api_error(
    status: int,
    code: str | None,
    message: str,
    request_id: str | None,
    *,
    retry_after: float | None = None,
    workflow: bool = False,
    encoded_authorization_message: str | None = None,
) -> ApiError:
    """The exception type for an HTTP error status (the runtime dispatches on the type).

    A 404 is WorkflowGoneError only when the target is a workflow and CCE itself answered;
    a gateway 404 (APIGW.0101, "API does not exist": a wrong endpoint or prefix) is a plain
    NotFoundError, so a misconfiguration never reads as "the workflow vanished".
    """
    if status in (401, 403):
        if encoded_authorization_message:
            # which policy denied the call: an IAM administrator decodes it (STS)
            note = _short(encoded_authorization_message)
            message = f"{message} (encoded_authorization_message: {note})"
        error = AuthError(status, code, message, request_id)
        error.encoded_authorization_message = encoded_authorization_message
        return error
    if status == 404:
        gone = workflow and not is_gateway_code(code)
        cls = WorkflowGoneError if gone else NotFoundError
        return cls(status, code, message, request_id)
    if status == 429:
        return ThrottledError(status, code, message, request_id, retry_after=retry_after)
    if status >= 500:
        return ServerError(status, code, message, request_id)
    return ApiError(status, code, message, request_id)
