"""The pure retry arithmetic: backoff per retry and what each error earns."""

from __future__ import annotations

import pytest

from watcher.cloud.client import RetryPolicy, retry_delay
from watcher.core.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    NotFoundError,
    ServerError,
    ThrottledError,
    TransportError,
    WatcherError,
)


@pytest.mark.parametrize(
    ("retry", "jitter", "rand", "expected"),
    [
        (0, "none", 0.5, 0.0),
        (1, "none", 0.5, 0.5),
        (2, "none", 0.5, 1.0),
        (3, "none", 0.5, 2.0),
        (5, "none", 0.5, 8.0),
        (6, "none", 0.5, 8.0),  # capped
        (10_000, "none", 0.5, 8.0),  # no overflow for absurd retry numbers
        (1, "full", 0.0, 0.0),
        (1, "full", 0.5, 0.25),
        (3, "full", 0.5, 1.0),
        (6, "full", 0.999, 7.992),
        (2, "full", 7.0, 1.0),  # rand is clamped to [0, 1]
        (2, "full", -1.0, 0.0),
    ],
)
def test_backoff_delay(retry: int, jitter: str, rand: float, expected: float) -> None:
    got = RetryPolicy(base=0.5, cap=8.0, jitter=jitter).delay(retry, rand)  # type: ignore[arg-type]
    assert got == pytest.approx(expected)


POLICY = RetryPolicy(attempts=3, base=0.5, cap=8.0, jitter="none")


@pytest.mark.parametrize(
    ("error", "failures", "expected"),
    [
        (ServerError(503, None, ""), 1, 0.5),
        (ServerError(500, None, ""), 2, 1.0),
        (ServerError(500, None, ""), 3, None),  # attempts used up
        (TransportError("timed out"), 1, 0.5),
        (ThrottledError(429, None, "", retry_after=2.0), 1, 2.0),
        (ThrottledError(429, None, "", retry_after=8.0), 1, 8.0),  # == cap still honoured
        (ThrottledError(429, None, "", retry_after=30.0), 1, None),  # scheduler's business
        (ThrottledError(429, None, "", retry_after=None), 2, 1.0),  # no header: backoff
        (ThrottledError(429, None, "", retry_after=1.0), 3, None),
        (AuthError(401, None, ""), 1, None),
        (NotFoundError(404, None, ""), 1, None),
        (ApiError(400, None, ""), 1, None),
        (BadResponseError("x"), 1, None),
    ],
)
def test_retry_delay(error: WatcherError, failures: int, expected: float | None) -> None:
    assert retry_delay(error, failures, POLICY, rand=0.5) == expected


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
