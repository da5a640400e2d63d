"""redact_text: known secrets, URL credentials, sensitive query values, bearer tokens."""

from __future__ import annotations

import logging

import pytest

from watcher.notify.redact import RedactingFilter
from watcher.redact import redact_text


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("posting to abcdef123 failed", ["abcdef123"], "posting to **** failed"),
        ("token a%2Fb%20c here", ["a/b c"], "token **** here"),
        ("xy stays", ["xy"], "xy stays"),  # too short to mask as a bare substring
        ("json://user:pw@host/x", [], "json://user:****@host/x"),
        ("https://h/p?token=abc&mode=1", [], "https://h/p?token=****&mode=1"),
        ("x?%2BAuthorization=Bearer%20Z&a=1", [], "x?%2BAuthorization=****&a=1"),
        ("?+X-Api-Key=zzz", [], "?+X-Api-Key=****"),
        ("headers={'Authorization': 'Bearer QQQ'}", [], "headers={'Authorization': '****'}"),
        ('password="pw" user="bob"', [], 'password="****" user="bob"'),
        ("sent Bearer abc.def", [], "sent Bearer ****"),
        ("nothing here", ["unrelated"], "nothing here"),
    ],
)
def test_redact_text(text: str, secrets: list[str], expected: str) -> None:
    assert redact_text(text, secrets) == expected


def test_longest_secret_wins() -> None:
    assert redact_text("abcdef", ["abc", "abcdef"]) == "****"


def test_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.notify.redact")
    filt = RedactingFilter(["S3CRET-VALUE"])
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger="tests.notify.redact"):
            logger.info("url %s", "json://h/?x=S3CRET-VALUE")
    finally:
        logger.removeFilter(filt)
    assert caplog.records[0].getMessage() == "url json://h/?x=****"
