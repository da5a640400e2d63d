"""Credential providers: how a request to CCE proves who sends it (CCE_API.md 4).

Three providers sit behind one small Protocol, so the client never knows which is in use:

- ``AkSkAuth``: static (or externally supplied temporary) keys, SDK-HMAC-SHA256 signing;
- ``IamPasswordAuth``: an IAM user token (``X-Auth-Token``), cached, renewed before expiry;
- ``MetadataAuth``: temporary keys of the agency attached to the ECS/CCE node, read from
  the metadata service, renewed 40 min before they expire.

Every provider keeps its secrets in private attributes, and no secret reaches ``repr()``,
an exception message or a log line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp
from yarl import URL

from watcher.cloud import responses, signer
from watcher.core.errors import (
    AuthError,
    CredentialError,
    ServerError,
    ThrottledError,
    TransportError,
)
from watcher.core.timeparse import parse_timestamp_lenient
from watcher.redact import redact_text

JSON = "application/json"

SecretSink = Callable[[str], None]
"""Told every credential the moment it arrives (a fresh IAM token, temporary keys, a metadata
session token). The composition root passes the log redaction's registration, so a secret
never reaches a log; cloud itself knows nothing of the log registry."""
_AUTH_BODY_CAP = 1024 * 1024  # an IAM token answer with nocatalog is a few KB

Now = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def renew_at(now: datetime, expires_at: datetime, margin: timedelta) -> datetime:
    """When to renew a credential: ``margin`` before expiry, or halfway through a lifetime
    shorter than twice the margin (so a short-lived credential is not renewed on every use)."""
    lifetime = expires_at - now
    return expires_at - min(margin, max(lifetime, timedelta(0)) / 2)


class Auth(Protocol):
    """What the client needs from a credential provider."""

    @property
    def kind(self) -> str:
        """A short name for logs and metrics: "aksk", "iam-password", "metadata"."""
        ...

    async def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        """Return the complete headers to send with this exact request."""
        ...

    async def refresh(self) -> bool:
        """Drop cached credentials after a 401; True when retrying can use new ones."""
        ...


def host_header(url: URL) -> str:
    """The Host value the SDK signs: the netloc, with the port only when it is not default."""
    host = url.raw_host or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if url.explicit_port is not None and not url.is_default_port():
        return f"{host}:{url.port}"
    return host


def scrub(text: str, *secrets: str | None) -> str:
    """Mask each non-empty secret (and anything secret-shaped) in ``text``."""
    return redact_text(text, [s for s in secrets if s])


def _mask(access_key: str) -> str:
    return access_key[:4] + "…" if len(access_key) > 8 else "…"


def _sign_aksk(
    method: str,
    url: URL,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    security_token: str | None,
    project_id: str | None,
    now: datetime,
) -> dict[str, str]:
    out = dict(headers)
    out.setdefault("Content-Type", JSON)  # the SDK sends it on every call, GET included
    if project_id:
        out["X-Project-Id"] = project_id
    return signer.sign(
        method,
        host_header(url),
        url.raw_path,
        list(url.query.items()) if url.raw_query_string else (),  # no MultiDict per poll
        out,
        body,
        access_key=access_key,
        secret_key=secret_key,
        security_token=security_token,
        now=now,
    )


class AkSkAuth:
    """Sign every request with an access key and secret key (SDK-HMAC-SHA256)."""

    kind = "aksk"

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        security_token: str | None = None,
        project_id: str | None = None,
        *,
        now: Now = _utcnow,
    ) -> None:
        if not access_key or not secret_key:
            raise CredentialError("AK/SK credentials need both an access key and a secret key")
        self._access_key = access_key
        self._secret_key = secret_key
        self._security_token = security_token or None
        self._project_id = project_id or None
        self._now = now

    def __repr__(self) -> str:
        temporary = ", temporary" if self._security_token else ""
        return f"AkSkAuth(access_key={_mask(self._access_key)!r}{temporary})"

    __str__ = __repr__

    @property
    def access_key(self) -> str:
        return self._access_key

    async def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        return _sign_aksk(
            method,
            url,
            headers,
            body,
            access_key=self._access_key,
            secret_key=self._secret_key,
            security_token=self._security_token,
            project_id=self._project_id,
            now=self._now(),
        )

    async def refresh(self) -> bool:
        # Static keys cannot be renewed; retrying a rejected signature only walks toward the
        # gateway's lock (five failures in a row lock the AK for five minutes).
        return False


def aksk_from_env(environ: Mapping[str, str], project_id: str | None = None) -> AkSkAuth | None:
    """AkSkAuth from the SDK's variable names (HUAWEICLOUD_SDK_AK/_SK/_SECURITY_TOKEN/
    _PROJECT_ID), or None when AK or SK is unset. ``project_id`` wins over the variable."""
    ak = environ.get("HUAWEICLOUD_SDK_AK", "").strip()
    sk = environ.get("HUAWEICLOUD_SDK_SK", "").strip()
    if not ak or not sk:
        return None
    return AkSkAuth(
        ak,
        sk,
        environ.get("HUAWEICLOUD_SDK_SECURITY_TOKEN", "").strip() or None,
        project_id or environ.get("HUAWEICLOUD_SDK_PROJECT_ID", "").strip() or None,
    )


def _transport(what: str, exc: BaseException) -> TransportError:
    detail = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
    return TransportError(f"{what}: {detail}")


def _check_status(
    what: str, status: int, body: bytes, headers: Mapping[str, str], *secrets: str | None
) -> None:
    """Raise the right error for a failed credential request (transient ones stay transient,
    so the client's retry and the scheduler's backoff apply to IAM/metadata outages too)."""
    code, message, request_id = responses.parse_error_body(body, headers)
    message = scrub(f"{what} failed" + (f": {message}" if message else ""), *secrets)
    if status in (401, 403):
        raise AuthError(status, code, message, request_id)
    if status == 429:
        retry_after = responses.parse_retry_after(headers.get("Retry-After"))
        raise ThrottledError(status, code, message, request_id, retry_after=retry_after)
    if status >= 500:
        raise ServerError(status, code, message, request_id)
    raise CredentialError(f"{message} (HTTP {status}{', ' + code if code else ''})")


class IamPasswordAuth:
    """An IAM user token from a password login, cached and renewed ``refresh_margin`` early.

    Concurrent callers share one in-flight login (a lock), and ``refresh()`` drops the
    token so the next request logs in again: the client does that once after a 401.
    """

    kind = "iam-password"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        iam_endpoint: str,
        username: str,
        password: str,
        domain: str,
        *,
        project_id: str | None = None,
        project_name: str | None = None,
        refresh_margin: timedelta = timedelta(hours=1),
        fallback_lifetime: timedelta = timedelta(hours=2),
        now: Now = _utcnow,
        on_secret: SecretSink,
    ) -> None:
        if not (project_id or project_name):
            raise CredentialError("IAM password login needs a project id or a project name")
        if not (username and password and domain):
            raise CredentialError("IAM password login needs a user name, a password and a domain")
        self._session = session
        self._url = URL(iam_endpoint.rstrip("/") + "/v3/auth/tokens").with_query(nocatalog="true")
        self._username = username
        self._password = password
        self._domain = domain
        self._project_id = project_id or None
        self._project_name = project_name or None
        self._margin = refresh_margin
        self._fallback_lifetime = fallback_lifetime
        self._now = now
        self._on_secret = on_secret
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self._renew_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.logins = 0  # successful logins, for tests and a metrics gauge

    def __repr__(self) -> str:
        scope = (
            f"project_id={self._project_id!r}"
            if self._project_id
            else (f"project_name={self._project_name!r}")
        )
        return (
            f"IamPasswordAuth(user={self._username!r}, domain={self._domain!r}, {scope}, "
            f"endpoint={str(self._url.with_query(None))!r})"
        )

    __str__ = __repr__

    @property
    def expires_at(self) -> datetime | None:
        return self._expires_at

    def _cached(self) -> str | None:
        if self._renew_at is not None and self._now() < self._renew_at:
            return self._token
        return None

    async def token(self) -> str:
        """The cached token, logging in first when none is cached or it is about to expire."""
        if token := self._cached():
            return token
        async with self._lock:
            # Another caller may have logged in while we waited for the lock.
            return self._cached() or await self._login()

    async def _login(self) -> str:
        scope = {"id": self._project_id} if self._project_id else {"name": self._project_name}
        payload = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._username,
                            "password": self._password,
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": {"project": scope},
            }
        }
        what = f"IAM password login for user {self._username!r}"
        try:
            async with self._session.post(
                self._url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": JSON},
                allow_redirects=False,
            ) as resp:
                body = await responses.read_capped(resp, _AUTH_BODY_CAP, truncate=True)
                status, headers, token = (
                    resp.status,
                    resp.headers,
                    resp.headers.get("X-Subject-Token"),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport(what, exc) from None
        if status not in (200, 201):
            _check_status(what, status, body, headers, self._password)
        if not token:
            raise CredentialError(f"{what}: the answer has no X-Subject-Token header")
        expires_at = None
        try:
            data = json.loads(body)
            expires_at = parse_timestamp_lenient(data["token"]["expires_at"])
        except (ValueError, KeyError, TypeError, RecursionError):
            pass
        now = self._now()
        # Without a readable expiry, renew early rather than use a token past its end.
        self._expires_at = expires_at or now + self._margin + self._fallback_lifetime
        self._renew_at = renew_at(now, self._expires_at, self._margin)
        self._token = token
        self._on_secret(token)  # a fresh IAM token never reaches a log
        self.logins += 1
        return token

    async def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        out = dict(headers)
        out.setdefault("Content-Type", JSON)
        out["X-Auth-Token"] = await self.token()
        return out

    async def refresh(self) -> bool:
        self._token = None
        self._expires_at = self._renew_at = None
        return True


@dataclass(frozen=True, slots=True)
class TemporaryKeys:
    """Temporary AK/SK plus security token; only the access key shows in repr()."""

    access: str
    secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expires_at: datetime | None


_AGENCY_MISSING = "Please configure Cloud Service Agency first"


def parse_temporary_keys(data: object) -> TemporaryKeys:
    """Parse the metadata/STS credential JSON, with the wrappers and spellings the SDK accepts."""
    if not isinstance(data, dict):
        raise CredentialError("metadata credentials: the answer is not a JSON object")
    inner = data.get("credential") or data.get("credentials") or data
    if not isinstance(inner, dict):
        raise CredentialError("metadata credentials: the credential is not a JSON object")

    def pick(*names: str) -> str | None:
        for name in names:
            value = inner.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    access = pick("access", "accessKeyId", "access_key_id")
    secret = pick("secret", "secretAccessKey", "secret_access_key")
    token = pick("securitytoken", "securityToken", "security_token")
    if not (access and secret and token):
        raise CredentialError("metadata credentials: access, secret or security token missing")
    expires = pick("expires_at", "expiration")
    return TemporaryKeys(access, secret, token, parse_timestamp_lenient(expires))


class MetadataAuth:
    """Temporary keys of the agency attached to this ECS/CCE node (the metadata service).

    Follows the SDK's MetadataAccessor: an optional session token (PUT, v2) with a v1
    fallback, one token renewal on a 401 that is not "no agency", keys renewed
    ``refresh_margin`` (40 min) before they expire.
    """

    kind = "metadata"
    TOKEN_PATH = "/meta-data/latest/api/token"  # noqa: S105 - a URL path, not a password
    KEYS_PATH = "/openstack/latest/securitykey"
    TOKEN_TTL_SECONDS = 21600

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str = "http://169.254.169.254",
        *,
        project_id: str | None = None,
        refresh_margin: timedelta = timedelta(minutes=40),
        fallback_lifetime: timedelta = timedelta(minutes=15),
        timeout: aiohttp.ClientTimeout = aiohttp.ClientTimeout(  # noqa: B008 - immutable
            total=6, sock_connect=3, sock_read=3
        ),
        now: Now = _utcnow,
        on_secret: SecretSink,
    ) -> None:
        self._session = session
        self._on_secret = on_secret
        self._base = URL(base.rstrip("/"))
        self._project_id = project_id or None
        self._margin = refresh_margin
        self._fallback_lifetime = fallback_lifetime
        self._timeout = timeout
        self._now = now
        self._session_token: str | None = None
        self._session_token_at: datetime | None = None
        self._keys: TemporaryKeys | None = None
        self._renew_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # successful key fetches, for tests and a metrics gauge

    def __repr__(self) -> str:
        access = _mask(self._keys.access) if self._keys else None
        return f"MetadataAuth(base={str(self._base)!r}, access_key={access!r})"

    __str__ = __repr__

    def _cached(self) -> TemporaryKeys | None:
        if self._renew_at is not None and self._now() < self._renew_at:
            return self._keys
        return None

    async def keys(self) -> TemporaryKeys:
        """The cached temporary keys, fetched first when absent or close to expiry."""
        if keys := self._cached():
            return keys
        async with self._lock:
            if keys := self._cached():  # fetched by another caller while we waited
                return keys
            keys = await self._fetch()
            now = self._now()
            expires = keys.expires_at or now + self._margin + self._fallback_lifetime
            self._keys, self._renew_at = keys, renew_at(now, expires, self._margin)
            for secret in (keys.secret, keys.security_token):
                self._on_secret(secret)
            self.fetches += 1
            return keys

    async def _request(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, bytes, Mapping[str, str]]:
        what = f"metadata service {method} {path}"
        try:
            async with self._session.request(
                method,
                self._base.with_path(path),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                body = await responses.read_capped(resp, _AUTH_BODY_CAP, truncate=True)
                return resp.status, body, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport(what, exc) from None

    async def _renew_session_token(self, *, fallback_ok: bool) -> None:
        self._session_token_at = self._now()
        status, body, headers = await self._request(
            "PUT", self.TOKEN_PATH, {"X-Metadata-Token-Ttl-Seconds": str(self.TOKEN_TTL_SECONDS)}
        )
        if status == 200:
            self._session_token = body.decode(errors="replace").strip() or None
            if self._session_token:
                self._on_secret(self._session_token)
            return
        if status in (404, 405, 503) and fallback_ok:
            self._session_token = None  # v1 metadata service: no session tokens
            return
        _check_status("metadata session token request", status, body, headers)

    def _session_token_stale(self) -> bool:
        if self._session_token_at is None:
            return True
        # Renew well inside the token's 6 h TTL; without a token (v1), re-probe daily as
        # the SDK does.
        age = self._now() - self._session_token_at
        limit = timedelta(seconds=self.TOKEN_TTL_SECONDS) - timedelta(minutes=30)
        return age > (limit if self._session_token else timedelta(hours=24))

    async def _fetch(self) -> TemporaryKeys:
        if self._session_token_stale():
            await self._renew_session_token(fallback_ok=True)
        status, body, headers = await self._get_keys()
        if status == 401 and _AGENCY_MISSING.encode() not in body:
            await self._renew_session_token(fallback_ok=False)
            status, body, headers = await self._get_keys()
        if status == 401 and _AGENCY_MISSING.encode() in body:
            raise CredentialError(
                "metadata credentials: no agency is attached to this server "
                "(Please configure Cloud Service Agency first)"
            )
        if status != 200:
            _check_status("metadata credentials request", status, body, headers)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise CredentialError("metadata credentials: the answer is not JSON") from None
        return parse_temporary_keys(data)

    async def _get_keys(self) -> tuple[int, bytes, Mapping[str, str]]:
        headers = {"X-Metadata-Token": self._session_token} if self._session_token else {}
        return await self._request("GET", self.KEYS_PATH, headers)

    async def sign(
        self, method: str, url: URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        keys = await self.keys()
        return _sign_aksk(
            method,
            url,
            headers,
            body,
            access_key=keys.access,
            secret_key=keys.secret,
            security_token=keys.security_token,
            project_id=self._project_id,
            now=self._now(),
        )

    async def refresh(self) -> bool:
        self._keys = None
        self._renew_at = None
        return True
