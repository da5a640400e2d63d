"""Authentication as the API gateway in front of CCE does it (CCE_API.md 3.2, 4).

Holds what the simulator issued (IAM tokens, metadata temporary keys) and decides, per
request, whether X-Auth-Token or an SDK-HMAC-SHA256 signature is acceptable. Signatures
are re-computed with watcher.cloud.signer over the client's declared SignedHeaders and the
raw body bytes. Five bad signatures in a row lock an AK for five minutes.
"""

from __future__ import annotations

import hmac
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from watcher.cloud import signer
from watcher.core.timeparse import format_iam
from watcher.simulator.account import Account

MAX_SKEW = timedelta(minutes=15)
LOCK_AFTER = 5
LOCK_SECONDS = 300.0

SIGNATURE_FAIL = "verify aksk signature fail"
TOKEN_NOT_FOUND = "x-auth-token not found"  # noqa: S105 - an error message, not a secret
TOKEN_DECRYPT = "decrypt token fail"  # noqa: S105 - an error message, not a secret
AK_LOCKED = "AK access failed to reach the limit,forbidden"


class AuthFailure(Exception):
    """A request the gateway rejects; ``reason`` is the 0301 message variant."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class _Key:
    secret: str
    security_token: str | None = None
    expires_at: datetime | None = None


@dataclass(slots=True)
class _Token:
    project_id: str
    expires_at: datetime


def _random_upper(n: int) -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(n))


class Authenticator:
    """Issued credentials and the per-AK failure counters."""

    def __init__(
        self, account: Account, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.account = account
        self._now = now
        self._tokens: dict[str, _Token] = {}
        self._keys: dict[str, _Key] = {account.access_key: _Key(account.secret_key)}
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    # -- issuing ---------------------------------------------------------------------

    def issue_token(self, project_id: str) -> tuple[str, datetime, datetime]:
        """A new IAM token (several KB, like the real PKI token) and its issue/expiry times."""
        issued = self._now()
        expires = issued + timedelta(seconds=self.account.token_ttl)
        token = "MIIZ" + secrets.token_urlsafe(3600).replace("_", "+")
        self._tokens[token] = _Token(project_id, expires)
        return token, issued, expires

    def issue_temporary(self) -> dict[str, str]:
        """Temporary AK/SK plus security token, as the metadata service hands them out."""
        access = "TMP" + _random_upper(17)
        secret = secrets.token_urlsafe(30)[:40]
        security_token = "gQpzb3V0aGVhc3Qt" + secrets.token_urlsafe(600)
        expires = self._now() + timedelta(seconds=self.account.temporary_ttl)
        self._keys[access] = _Key(secret, security_token, expires)
        return {
            "access": access,
            "secret": secret,
            "securitytoken": security_token,
            "expires_at": format_iam(expires),
        }

    def expire_all(self) -> int:
        """Make every issued token and temporary key expired now (the token_expiry fault)."""
        past = self._now() - timedelta(seconds=1)
        count = 0
        for token in self._tokens.values():
            token.expires_at = past
            count += 1
        for key in self._keys.values():
            if key.security_token is not None:
                key.expires_at = past
                count += 1
        return count

    def reset_locks(self) -> None:
        self._failures.clear()
        self._locked_until.clear()

    # -- checking --------------------------------------------------------------------

    def check(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> str:
        """Return the authenticated principal (token or AK); raise AuthFailure otherwise."""
        token = headers.get("X-Auth-Token")
        if token is not None:
            return self._check_token(token)
        value = headers.get("Authorization")
        if not value:
            raise AuthFailure(TOKEN_NOT_FOUND, TOKEN_NOT_FOUND)
        return self._check_signature(method, path, query, headers, body, value)

    def _check_token(self, token: str) -> str:
        record = self._tokens.get(token)
        if record is None:
            raise AuthFailure(TOKEN_DECRYPT, TOKEN_DECRYPT)
        if record.expires_at <= self._now():
            detail = f"token expires, expires_at: {format_iam(record.expires_at)}"
            raise AuthFailure("token expires", detail)
        return "token"

    def _check_signature(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        value: str,
    ) -> str:
        parsed = signer.parse_authorization(value)
        if parsed is None:
            raise AuthFailure(SIGNATURE_FAIL, SIGNATURE_FAIL)
        access, names, received = parsed
        key = self._keys.get(access)
        if key is not None and key.expires_at is not None and key.expires_at <= self._now():
            key = None
        if key is None:
            detail = f"Get secretKey failed,ak:{access},err:ak not exist"
            raise AuthFailure("ak not exist", detail)
        if self._locked_until.get(access, 0.0) > time.monotonic():
            raise AuthFailure(AK_LOCKED, AK_LOCKED)
        if not self._signature_ok(method, path, query, headers, body, access, key, names, received):
            failures = self._failures.get(access, 0) + 1
            if failures >= LOCK_AFTER:
                self._locked_until[access] = time.monotonic() + LOCK_SECONDS
                failures = 0
            self._failures[access] = failures
            raise AuthFailure(SIGNATURE_FAIL, SIGNATURE_FAIL)
        self._failures.pop(access, None)
        return access

    def _signature_ok(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        access: str,
        key: _Key,
        names: list[str],
        received: str,
    ) -> bool:
        date = signer.parse_sdk_date(headers.get(signer.DATE_HEADER, ""))
        if date is None or abs(self._now() - date) > MAX_SKEW:
            return False
        if key.security_token is not None and not hmac.compare_digest(
            headers.get("X-Security-Token", ""), key.security_token
        ):
            return False
        expected = signer.authorization(
            method, path, query, headers, body, access, key.secret, signed=names
        )
        return hmac.compare_digest(expected.rpartition("Signature=")[2], received)
