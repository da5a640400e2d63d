"""Secret masking rules for free text: one place, used by the logs and the notify layer.

Secrets leak through text in a few shapes: the value itself (raw or URL-encoded), the
password of ``scheme://user:password@``, a secret-looking query parameter (including
apprise's ``+Header=``, ``:payload=`` and ``-param=`` prefixes, raw or percent-encoded),
``'key': 'value'`` in dumped dicts, and ``Bearer``/``Basic`` credentials. Pure functions;
the process-wide registry of known secrets lives in watcher.logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "****"

# A secret shorter than this would mask ordinary words and digits everywhere.
MIN_SECRET_LEN = 3

# Key names whose values are masked wholesale. "sk" only as a whole word (huawei_sk, sk) so
# that "task" and "disk" stay readable; "pass" but not "passed"/"passing" (check results).
SECRET_KEY = re.compile(
    r"pass(?!ed|ing)|secret|token|api_?key|authori[sz]ation|cookie|credential|security"
    r"|private_?key|signature|(?<![a-z0-9])sk(?![a-z0-9])|^auth$",
    re.IGNORECASE,
)
# Query parameter names that carry secrets in URLs, on top of SECRET_KEY: apprise's `?key=`,
# `?apikey=`, `?routing_key=`, `?+Authorization=` (a header), `?webhook=`, `?sig=`.
_SECRET_PARAM = re.compile(r"key|^sig$|^pwd?$|auth|webhook", re.IGNORECASE)

# scheme://user:password@ (the user is kept, the password masked)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*):(?P<pw>[^\s/@]*)@")
# key=value in query strings and key="value" in debug dumps
_PARAM = re.compile(
    r"(?<![A-Za-z0-9_.%+:-])(?P<key>[+:-]?[A-Za-z0-9_.%-]+)=(?P<q>[\"']?)(?P<value>[^&\s'\",}]*)"
)
# 'key': 'value' in dumped dicts
_DICT_VALUE = re.compile(
    r"(?P<key>(?P<kq>['\"])[+:-]?[A-Za-z0-9_.-]+(?P=kq)\s*:\s*)"
    r"(?P<vq>['\"])(?P<value>[^'\"]*)(?P=vq)"
)
_BEARER = re.compile(r"\b(Bearer|Basic|Token)(\s+|%20)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def is_secret_param(name: str) -> bool:
    """Whether a URL/query parameter or dict key name carries a secret value."""
    bare = unquote(name).lstrip("+:-")
    return bool(SECRET_KEY.search(bare) or _SECRET_PARAM.search(bare))


def secret_variants(secret: str) -> set[str]:
    """The forms a secret can take in text: as is, percent-decoded and encoded."""
    forms = {
        secret,
        unquote(secret),
        unquote_plus(secret),
        quote(secret),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def known_secrets_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for every form of every secret, longest first (a secret containing
    another is masked whole)."""
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LEN:
            forms |= secret_variants(secret)
    if not forms:
        return None
    return re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True))))


def _mask_param(match: re.Match[str]) -> str:
    if match.group("value") and is_secret_param(match.group("key")):
        return f"{match.group('key')}={match.group('q')}{MASK}"
    return match.group(0)


def _mask_dict(match: re.Match[str]) -> str:
    if match.group("value") and is_secret_param(match.group("key").strip("'\": ")):
        quote_char = match.group("vq")
        return f"{match.group('key')}{quote_char}{MASK}{quote_char}"
    return match.group(0)


def redact_text(
    text: str,
    secrets: Iterable[str] = (),
    *,
    pattern: re.Pattern[str] | None = None,
) -> str:
    """Mask known secrets (``secrets`` or a prebuilt ``pattern``), URL passwords, secret
    parameters, secret dict values and bearer credentials."""
    for known in (pattern, known_secrets_pattern(secrets)):
        if known is not None:
            text = known.sub(MASK, text)
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    if ":" in text:
        text = _DICT_VALUE.sub(_mask_dict, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def url_secrets(url: str) -> list[str]:
    """The parts of a notification URL to treat as secrets: the password of
    ``scheme://user:password@`` and the values of secret-looking query parameters.

    Tokens that apprise keeps in the host or path (``tgram://TOKEN/chat``) cannot be told
    apart from host names here; the notify layer registers those when it parses the URL.
    """
    found: list[str] = []
    if m := _USERINFO.search(url):
        found.append(unquote(m.group("pw")))
    query = url.partition("?")[2]
    for m in _PARAM.finditer(query):
        if m.group("value") and is_secret_param(m.group("key")):
            found.extend({m.group("value"), unquote_plus(m.group("value"))})
    return [s for s in found if s]
