"""SDK-HMAC-SHA256 request signing, as huaweicloudsdkcore's Signer does it (CCE_API.md 4.2).

Pure functions over method, path, query, headers and body. The client uses ``sign`` to add
the headers it sends; the simulator uses ``authorization`` to verify what it receives. Both
hash the exact body bytes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="~")


# A path of unreserved characters and slashes decodes and re-encodes to itself.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


def canonical_uri(path: str) -> str:
    """Decode the path, re-encode each segment (RFC 3986 unreserved), end with ``/``."""
    if _PLAIN_PATH.fullmatch(path):  # every API path the client builds (ids are checked)
        return path if path.endswith("/") else path + "/"
    return _encoded_uri(path)


@functools.lru_cache(maxsize=1024)
def _encoded_uri(path: str) -> str:
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    # The SDK sorts the raw pairs, then encodes; the other order differs for keys holding
    # reserved characters (found by the property test against huaweicloudsdkcore).
    pairs = [(_encode(k), _encode(v)) for k, v in sorted(query)]
    return "&".join(f"{k}={v}" for k, v in pairs)


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    # The SDK signs every header present except names containing "_".
    return sorted({name.lower() for name in headers if "_" not in name})


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    signed: Sequence[str] | None = None,
) -> str:
    lowered = {name.lower(): str(value).strip() for name, value in headers.items()}
    names = list(signed) if signed is not None else signed_header_names(headers)
    payload_hash = lowered.get("x-sdk-content-sha256") or hashlib.sha256(body).hexdigest()
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            "".join(f"{name}:{lowered.get(name, '')}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    # hmac.digest is the one-shot C path: about half the cost of hmac.new(...).hexdigest().
    return hmac.digest(secret_key.encode(), to_sign.encode(), "sha256").hex()


def authorization(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    signed: Sequence[str] | None = None,
) -> str:
    """The Authorization header value for a request whose headers include X-Sdk-Date and Host.

    ``signed`` fixes the signed header list (a verifier passes the one the client declared);
    by default every header is signed, as the SDK does.
    """
    names = list(signed) if signed is not None else signed_header_names(headers)
    date = next((v for k, v in headers.items() if k.lower() == "x-sdk-date"), "")
    canonical = canonical_request(method, path, query, headers, body, names)
    sig = signature(secret_key, string_to_sign(canonical, date))
    return f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(names)}, Signature={sig}"


_DATE_MARK = "\x00"  # cannot occur in a header value, so it splits the template exactly


@functools.lru_cache(maxsize=64)
def _canonical_template(
    method: str,
    query: tuple[tuple[str, str], ...],
    headers: tuple[tuple[str, str], ...],
) -> tuple[str, str, str]:
    """The canonical request of a bodyless request after its path, around its X-Sdk-Date
    value, and the signed header list: built once per header set (not per path: tens of
    thousands of watched paths would evict each other), then path and date are spliced in."""
    with_mark = {**dict(headers), DATE_HEADER: _DATE_MARK}
    after_path = canonical_request(method, "/", query, with_mark, b"").split("\n", 2)[2]
    before, _, after = after_path.partition(_DATE_MARK)
    return before, after, ";".join(signed_header_names(with_mark))


@functools.lru_cache(maxsize=4)
def _sdk_date_of(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime(DATE_FORMAT)


def sdk_date(moment: datetime) -> str:
    """X-Sdk-Date for a moment; formatted once per second, as every poll in it shares it."""
    return _sdk_date_of(int(moment.timestamp()))


def sign(
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    security_token: str | None = None,
    now: datetime | None = None,
) -> dict[str, str]:
    """Return ``headers`` plus X-Security-Token, X-Sdk-Date, Host and Authorization.

    ``host`` is the URL's netloc: bare for a default port, ``host:port`` otherwise, exactly
    what the HTTP client sends as the Host header.
    """
    out = dict(headers)
    if security_token:
        out["X-Security-Token"] = security_token
    lowered = {k.lower() for k in out}  # one pass over the names, not one per lookup
    if "host" not in lowered:
        out["Host"] = host
    if body or "x-sdk-date" in lowered:  # a body, or a caller's own date: the general path
        if "x-sdk-date" not in lowered:
            out[DATE_HEADER] = sdk_date(now or datetime.now(UTC))
        out["Authorization"] = authorization(method, path, query, out, body, access_key, secret_key)
        return out
    # A poller signs the same bodyless request every few seconds; only the date differs.
    # The template's key is the headers as given (no sort: a caller's order is stable).
    before, after, names = _canonical_template(method, tuple(query), tuple(out.items()))
    date = out[DATE_HEADER] = sdk_date(now or datetime.now(UTC))
    canonical = f"{method.upper()}\n{canonical_uri(path)}\n{before}{date}{after}"
    sig = signature(secret_key, string_to_sign(canonical, date))
    out["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={names}, Signature={sig}"
    )
    return out


def parse_authorization(value: str) -> tuple[str, list[str], str] | None:
    """Split an Authorization header into (access key, signed header names, signature)."""
    if not value.startswith(ALGORITHM + " "):
        return None
    parts: dict[str, str] = {}
    for piece in value[len(ALGORITHM) + 1 :].split(","):
        key, sep, val = piece.strip().partition("=")
        if not sep:
            return None
        parts[key] = val
    try:
        return parts["Access"], parts["SignedHeaders"].split(";"), parts["Signature"]
    except KeyError:
        return None


def parse_sdk_date(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
