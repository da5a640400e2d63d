"""Credential providers: secrets stay private, renewal timing, and the metadata and IAM
edge cases the simulator does not produce (loopback servers)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from tests.cloud.loopback import serve
from watcher.cloud.auth import (
    AkSkAuth,
    IamPasswordAuth,
    MetadataAuth,
    aksk_from_env,
    host_header,
    parse_temporary_keys,
    renew_at,
)
from watcher.cloud.http import make_session
from watcher.core.errors import AuthError, CredentialError, ServerError, TransportError
from watcher.core.timeparse import format_iam

SK = "very-secret-key-0123456789"
PASSWORD = "p4ssw0rd-do-not-leak"


def _ignore(secret: str) -> None:
    """An on_secret for tests that do not look at redaction."""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://cce.ap-southeast-1.myhuaweicloud.com/api",
            "cce.ap-southeast-1.myhuaweicloud.com",
        ),
        ("https://cce.example:443/x", "cce.example"),
        ("https://cce.example:8443/x", "cce.example:8443"),
        ("http://127.0.0.1:80/x", "127.0.0.1"),
        ("http://127.0.0.1:9851/x", "127.0.0.1:9851"),
        ("http://[::1]:9851/x", "[::1]:9851"),
    ],
)
def test_host_header(url: str, expected: str) -> None:
    assert host_header(URL(url)) == expected


T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lifetime", "margin", "renew_after"),
    [
        (timedelta(hours=24), timedelta(hours=1), timedelta(hours=23)),
        (timedelta(hours=1), timedelta(minutes=40), timedelta(minutes=30)),  # half a short life
        (timedelta(hours=6), timedelta(minutes=40), timedelta(hours=5, minutes=20)),
        (timedelta(0), timedelta(hours=1), timedelta(0)),
    ],
)
def test_renew_at(lifetime: timedelta, margin: timedelta, renew_after: timedelta) -> None:
    assert renew_at(T0, T0 + lifetime, margin) == T0 + renew_after


@pytest.mark.parametrize(
    "body",
    [
        {
            "credential": {
                "access": "A",
                "secret": "S",
                "securitytoken": "T",
                "expires_at": "2024-01-01T06:00:00.000000Z",
            }
        },
        {
            "credentials": {
                "accessKeyId": "A",
                "secretAccessKey": "S",
                "securityToken": "T",
                "expiration": "2024-01-01T06:00:00Z",
            }
        },
        {
            "access_key_id": "A",
            "secret_access_key": "S",
            "security_token": "T",
            "expires_at": "2024-01-01T06:00:00.000000Z",
        },
    ],
)
def test_parse_temporary_keys(body: dict[str, Any]) -> None:
    keys = parse_temporary_keys(body)
    assert (keys.access, keys.secret, keys.security_token) == ("A", "S", "T")
    assert keys.expires_at == datetime(2024, 1, 1, 6, tzinfo=UTC)
    assert "'S'" not in repr(keys) and "'T'" not in repr(keys)


@pytest.mark.parametrize("body", [[], {"credential": {"access": "A"}}, {"credential": "x"}])
def test_parse_temporary_keys_rejects(body: Any) -> None:
    with pytest.raises(CredentialError):
        parse_temporary_keys(body)


async def test_aksk_secrets_stay_out_of_repr_and_sign_adds_sdk_headers() -> None:
    auth = AkSkAuth(
        "AKIDEXAMPLE0123456789",
        SK,
        "SECURITY-TOKEN-XYZ",
        "pid",
        now=lambda: datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    for text in (repr(auth), str(auth)):
        assert SK not in text and "SECURITY-TOKEN-XYZ" not in text
        assert "AKIDEXAMPLE0123456789" not in text  # masked too
    headers = await auth.sign("GET", URL("https://cce.example:8443/api/v3/x?b=2&a=1"), {}, b"")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Project-Id"] == "pid"
    assert headers["X-Security-Token"] == "SECURITY-TOKEN-XYZ"
    assert headers["X-Sdk-Date"] == "20240102T030405Z"
    assert headers["Host"] == "cce.example:8443"
    assert (
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token"
        in (headers["Authorization"])
    )
    assert await auth.refresh() is False


def test_aksk_from_env() -> None:
    assert aksk_from_env({}) is None
    assert aksk_from_env({"HUAWEICLOUD_SDK_AK": "a"}) is None
    auth = aksk_from_env(
        {
            "HUAWEICLOUD_SDK_AK": "AK0123456789",
            "HUAWEICLOUD_SDK_SK": SK,
            "HUAWEICLOUD_SDK_PROJECT_ID": "p",
        }
    )
    assert auth is not None and auth.access_key == "AK0123456789" and SK not in repr(auth)
    with pytest.raises(CredentialError):
        AkSkAuth("", SK)


# -- IAM edge cases -------------------------------------------------------------------------


def _iam_app(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_post("/v3/auth/tokens", handler)
    return app


async def test_iam_concurrent_callers_share_one_login() -> None:
    logins = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal logins
        logins += 1
        assert request.query["nocatalog"] == "true"
        body = await request.json()
        assert body["auth"]["scope"] == {"project": {"name": "ap-southeast-1"}}
        await asyncio.sleep(0.05)
        expires = format_iam(datetime.now(UTC) + timedelta(hours=24))
        return web.json_response(
            {"token": {"expires_at": expires}},
            status=201,
            headers={"X-Subject-Token": f"token-{logins}"},
        )

    async with serve(_iam_app(handler)) as url, make_session() as session:
        told: list[str] = []
        auth = IamPasswordAuth(
            session,
            url,
            "user",
            PASSWORD,
            "dom",
            project_name="ap-southeast-1",
            on_secret=told.append,
        )
        tokens = await asyncio.gather(*(auth.token() for _ in range(10)))
        assert set(tokens) == {"token-1"} and logins == 1
        assert await auth.refresh() is True
        headers = await auth.sign("GET", URL(url), {}, b"")
        assert headers["X-Auth-Token"] == "token-2" and logins == 2
        assert told == ["token-1", "token-2"]  # each fresh token goes to the redaction
        assert PASSWORD not in repr(auth)


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "match"),
    [
        (
            401,
            {"error": {"code": 401, "message": "The username or password is wrong."}},
            {},
            AuthError,
            "username or password is wrong",
        ),
        (
            400,
            {"error": {"code": 400, "message": f"bad body {PASSWORD}"}},
            {},
            CredentialError,
            "bad body",
        ),
        (503, {}, {}, ServerError, "IAM password login"),
        (201, {"token": {}}, {}, CredentialError, "X-Subject-Token"),
    ],
)
async def test_iam_errors_never_carry_the_password(
    status: int, body: dict[str, Any], headers: dict[str, str], error: type[Exception], match: str
) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    async with serve(_iam_app(handler)) as url, make_session() as session:
        auth = IamPasswordAuth(
            session, url, "user", PASSWORD, "dom", project_id="p", on_secret=_ignore
        )
        with pytest.raises(error, match=match) as info:
            await auth.token()
    assert PASSWORD not in str(info.value) and PASSWORD not in repr(info.value)


async def test_iam_unreachable_is_transport_error() -> None:
    async with make_session() as session:
        auth = IamPasswordAuth(
            session, "http://127.0.0.1:9", "u", PASSWORD, "d", project_id="p", on_secret=_ignore
        )
        with pytest.raises(TransportError) as info:
            await auth.token()
    assert PASSWORD not in str(info.value)


def test_iam_needs_a_scope() -> None:
    with pytest.raises(CredentialError, match="project"):
        IamPasswordAuth(None, "http://x", "u", PASSWORD, "d", on_secret=_ignore)  # type: ignore[arg-type]


# -- metadata edge cases --------------------------------------------------------------------

KEYS = {
    "credential": {
        "access": "TMPAK000000000001",
        "secret": "tmp-secret",
        "securitytoken": "tmp-token",
        "expires_at": format_iam(datetime.now(UTC) + timedelta(hours=24)),
    }
}


def _metadata_app(
    token_status: int, key_answers: list[tuple[int, str]], seen: list[tuple[str, str | None]]
) -> web.Application:
    tokens = iter(range(1, 100))

    async def put_token(request: web.Request) -> web.Response:
        assert request.headers["X-Metadata-Token-Ttl-Seconds"] == "21600"
        seen.append(("PUT", None))
        if token_status != 200:
            return web.Response(status=token_status)
        return web.Response(text=f"session-{next(tokens)}")

    async def get_keys(request: web.Request) -> web.Response:
        seen.append(("GET", request.headers.get("X-Metadata-Token")))
        status, text = key_answers.pop(0) if key_answers else (200, json.dumps(KEYS))
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_put("/meta-data/latest/api/token", put_token)
    app.router.add_get("/openstack/latest/securitykey", get_keys)
    return app


@pytest.mark.parametrize("status", [404, 405, 503])
async def test_metadata_v1_fallback_without_session_token(status: int) -> None:
    seen: list[tuple[str, str | None]] = []
    async with serve(_metadata_app(status, [], seen)) as url, make_session() as session:
        auth = MetadataAuth(session, url, on_secret=_ignore)
        keys = await auth.keys()
    assert keys.access == "TMPAK000000000001"
    assert seen == [("PUT", None), ("GET", None)]


async def test_metadata_renews_session_token_once_on_401() -> None:
    seen: list[tuple[str, str | None]] = []
    answers = [(401, "token expired")]
    async with serve(_metadata_app(200, answers, seen)) as url, make_session() as session:
        told: list[str] = []
        auth = MetadataAuth(session, url, project_id="pid", on_secret=told.append)
        headers = await auth.sign("GET", URL("https://cce.example/api/v3/x"), {}, b"")
    # Every session token and the temporary keys' secrets go to the redaction.
    assert set(told) == {"session-1", "session-2", "tmp-secret", "tmp-token"}
    assert seen == [("PUT", None), ("GET", "session-1"), ("PUT", None), ("GET", "session-2")]
    assert headers["X-Security-Token"] == "tmp-token"
    assert "Access=TMPAK000000000001" in headers["Authorization"]
    assert "tmp-secret" not in repr(auth)


async def test_metadata_without_agency_is_credential_error() -> None:
    seen: list[tuple[str, str | None]] = []
    answers = [(401, "Please configure Cloud Service Agency first")]
    async with serve(_metadata_app(200, answers, seen)) as url, make_session() as session:
        with pytest.raises(CredentialError, match="no agency"):
            await MetadataAuth(session, url, on_secret=_ignore).keys()
    assert seen == [("PUT", None), ("GET", "session-1")]  # no token renewal for this 401


async def test_metadata_keys_renewed_40_minutes_before_expiry() -> None:
    seen: list[tuple[str, str | None]] = []
    clock = [datetime.now(UTC)]
    async with serve(_metadata_app(200, [], seen)) as url, make_session() as session:
        auth = MetadataAuth(session, url, now=lambda: clock[0], on_secret=_ignore)
        await auth.keys()
        clock[0] += timedelta(hours=23, minutes=19)
        await auth.keys()
        assert auth.fetches == 1
        clock[0] += timedelta(minutes=2)  # now 39 min before expiry
        await auth.keys()
        assert auth.fetches == 2
