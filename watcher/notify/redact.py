"""Redaction of secrets in text that came near a notification URL.

Apprise URLs carry credentials in many places (user:pass, path tokens, query values,
custom ``+Header`` values), and apprise's own privacy masking has gaps (LIBRARIES.md
1.13). Everything this package puts into a SendResult error, an exception or a log line
passes through ``redact_text`` first, with the secrets known for that URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "****"

# Secrets shorter than this are not masked as bare substrings: masking "a" or "1"
# everywhere would destroy the text while protecting nothing.
MIN_SECRET_LEN = 3

SENSITIVE_KEY = re.compile(
    r"pass|secret|token|key|auth|cookie|credential|signature|sig|webhook|apikey",
    re.IGNORECASE,
)

# scheme://user:password@  (the user part is kept, the password masked)
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@"
)

# key=value in query strings, also with apprise's +header / :payload / -param prefixes,
# raw or percent-encoded (%2B is '+', %3A is ':'), and key="value" in debug dumps.
_QUERY_VALUE = re.compile(
    r"(?<![A-Za-z0-9_.%+:-])(?P<key>[+:-]?[A-Za-z0-9_.%-]+)=(?P<q>[\"']?)(?P<value>[^&\s'\",}]*)"
)

# 'key': 'value' in dumped dicts.
_DICT_VALUE = re.compile(
    r"(?P<key>(?P<kq>['\"])[+:-]?[A-Za-z0-9_.-]+(?P=kq)\s*:\s*)"
    r"(?P<vq>['\"])(?P<value>[^'\"]*)(?P=vq)"
)

# Authorization-style values printed as text, e.g. "Bearer abc" in a dict dump.
_BEARER = re.compile(r"\b(Bearer|Basic|Token)(\s+|%20)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def _mask_query(match: re.Match[str]) -> str:
    key = match.group("key")
    if match.group("value") and SENSITIVE_KEY.search(unquote(key).lstrip("+:-")):
        return f"{key}={match.group('q')}{MASK}"
    return match.group(0)


def _mask_dict(match: re.Match[str]) -> str:
    if match.group("value") and SENSITIVE_KEY.search(match.group("key")):
        quote_char = match.group("vq")
        return f"{match.group('key')}{quote_char}{MASK}{quote_char}"
    return match.group(0)


def secret_variants(secret: str) -> set[str]:
    """The forms a secret can take in a log line: as is, percent-decoded and encoded."""
    forms = {
        secret,
        unquote(secret),
        unquote_plus(secret),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask known secrets, URL passwords, sensitive query values and bearer tokens.

    Known secrets are replaced longest first so that a secret containing another is
    masked whole.
    """
    known: set[str] = set()
    for secret in secrets:
        if secret:
            known |= secret_variants(secret)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    text = _QUERY_VALUE.sub(_mask_query, text)
    text = _DICT_VALUE.sub(_mask_dict, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


class RedactingFilter(logging.Filter):
    """A stdlib logging filter that redacts records of a library logger in place.

    Installed on the ``apprise`` (and urllib3) loggers for as long as a sender lives,
    because apprise prints unmasked URLs and headers at DEBUG/TRACE level.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = frozenset(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record as it is
            return True
        clean = redact_text(message, self.secrets)
        if clean != message:
            record.msg = clean
            record.args = None
        return True
