"""Gateway authentication: AK/SK signatures, AK lockout, IAM tokens, metadata credentials."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.simulator.conftest import A, Client, Reply, target_of, wf_path
from watcher.core.timeparse import parse_timestamp
from watcher.simulator import Simulator

PREFIX = "Incorrect IAM authentication information: "


def _show(sim: Simulator) -> str:
    t = target_of(sim, "clean_upgrade")
    return wf_path(t, f"/{t['workflow_id']}")


def _assert_0301(reply: Reply, message: str) -> None:
    assert reply.status == 401
    body = reply.json
    assert body["error_code"] == "APIGW.0301"
    assert body["error_msg"] == PREFIX + message
    assert body["request_id"] == reply.headers["X-Request-Id"]


async def test_correct_signature_is_accepted(sim: Simulator, client: Client) -> None:
    assert (await client.call("GET", _show(sim))).status == 200


async def test_no_credentials_at_all(sim: Simulator, client: Client) -> None:
    _assert_0301(await client.call("GET", _show(sim), auth="none"), "x-auth-token not found")


async def test_wrong_secret_key_is_rejected(sim: Simulator, client: Client) -> None:
    reply = await client.call("GET", _show(sim), secret_key="wrong")
    _assert_0301(reply, "verify aksk signature fail")


async def test_unknown_access_key(sim: Simulator, client: Client) -> None:
    reply = await client.call("GET", _show(sim), access_key="NOSUCHAK")
    _assert_0301(reply, "Get secretKey failed,ak:NOSUCHAK,err:ak not exist")


async def test_stale_date_is_rejected(sim: Simulator, client: Client) -> None:
    old = datetime.now(UTC) - timedelta(minutes=16)
    _assert_0301(await client.call("GET", _show(sim), now=old), "verify aksk signature fail")
    recent = datetime.now(UTC) - timedelta(minutes=10)
    assert (await client.call("GET", _show(sim), now=recent)).status == 200


async def test_tampered_body_is_rejected(sim: Simulator, client: Client) -> None:
    """The signature covers the raw bytes: the SDK's spaced JSON verifies, a changed body not."""
    path = _show(sim)
    signed_body = b'{"status": {"phase": "Cancel"}}'
    headers = {"Content-Type": "application/json"}
    from watcher.cloud import signer

    sent = signer.sign(
        "PATCH",
        client.host,
        path,
        [],
        headers,
        signed_body,
        access_key=A.access_key,
        secret_key=A.secret_key,
    )
    tampered = b'{"status":{"phase":"Cancel"}}'
    async with client.session.patch(sim.url + path, data=tampered, headers=sent) as resp:
        assert resp.status == 401
        assert json.loads(await resp.read())["error_msg"].endswith("verify aksk signature fail")
    async with client.session.patch(sim.url + path, data=signed_body, headers=sent) as resp:
        assert resp.status == 200


async def test_signature_covers_query(sim: Simulator, client: Client) -> None:
    t = target_of(sim, "clean_upgrade")
    path = f"/api/v3/projects/{t['project_id']}/clusters"
    from watcher.cloud import signer

    sent = signer.sign(
        "GET",
        client.host,
        path,
        [("detail", "true")],
        {"Content-Type": "application/json"},
        b"",
        access_key=A.access_key,
        secret_key=A.secret_key,
    )
    async with client.session.get(sim.url + path + "?detail=false", headers=sent) as resp:
        assert resp.status == 401
    async with client.session.get(sim.url + path + "?detail=true", headers=sent) as resp:
        assert resp.status == 200


async def test_five_bad_signatures_lock_the_ak(sim: Simulator, client: Client) -> None:
    path = _show(sim)
    for _ in range(4):
        await client.call("GET", path, secret_key="wrong")
    assert (await client.call("GET", path)).status == 200  # a success resets the count
    for _ in range(5):
        _assert_0301(
            await client.call("GET", path, secret_key="wrong"), "verify aksk signature fail"
        )
    reply = await client.call("GET", path)  # even a correct signature is refused now
    _assert_0301(reply, "AK access failed to reach the limit,forbidden")
    counts = (await client.control("GET", "/_sim/requests")).json
    assert counts["auth_failure_reasons"]["AK access failed to reach the limit,forbidden"] == 1
    await sim.reset()
    assert (await client.call("GET", path)).status == 200


async def _login(client: Client, **overrides: object) -> Reply:
    user: dict[str, object] = {"name": A.user, "password": A.password, "domain": {"name": A.domain}}
    user.update(overrides)
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": A.region}},
        }
    }
    return await client.call("POST", "/v3/auth/tokens", body=json.dumps(body).encode(), auth="")


async def test_iam_password_token_flow(sim: Simulator, client: Client) -> None:
    reply = await _login(client)
    assert reply.status == 201
    token = reply.headers["X-Subject-Token"]
    assert len(token) > 3000
    body = reply.json["token"]
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    issued = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert expires - issued == timedelta(hours=24)
    assert body["project"]["id"] == A.project_id
    assert body["catalog"][0]["endpoints"][0]["url"] == sim.url
    assert (await client.call("GET", _show(sim), auth="token", token=token)).status == 200
    _assert_0301(
        await client.call("GET", _show(sim), auth="token", token="bogus"), "decrypt token fail"
    )


async def test_iam_scope_by_project_id_and_nocatalog(sim: Simulator, client: Client) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": A.user, "password": A.password, "domain": {"name": A.domain}}
                },
            },
            "scope": {"project": {"id": A.project_id}},
        }
    }
    reply = await client.call(
        "POST",
        "/v3/auth/tokens",
        body=json.dumps(body).encode(),
        query=[("nocatalog", "true")],
        auth="",
    )
    assert reply.status == 201 and "catalog" not in reply.json["token"]


async def test_iam_wrong_password(client: Client) -> None:
    reply = await _login(client, password="nope")
    assert reply.status == 401
    assert reply.json["error"]["code"] == 401
    assert "X-Subject-Token" not in reply.headers
    bad = await client.call("POST", "/v3/auth/tokens", body=b"{}", auth="")
    assert bad.status == 400


async def test_token_expiry_fault(sim: Simulator, client: Client) -> None:
    token = (await _login(client)).headers["X-Subject-Token"]
    sim.add_fault("token_expiry")
    reply = await client.call("GET", _show(sim), auth="token", token=token)
    assert reply.status == 401
    assert reply.json["error_msg"].startswith(PREFIX + "token expires, expires_at: ")
    fresh = (await _login(client)).headers["X-Subject-Token"]
    assert (await client.call("GET", _show(sim), auth="token", token=fresh)).status == 200


async def test_project_discovery_is_signed(client: Client) -> None:
    query = [("name", A.region)]
    reply = await client.call("GET", "/v3/projects", query=query)
    assert reply.status == 200
    assert [p["id"] for p in reply.json["projects"]] == [A.project_id]
    other = await client.call("GET", "/v3/projects", query=[("name", "eu-west-0")])
    assert other.json["projects"] == []
    assert (await client.call("GET", "/v3/projects", query=query, auth="none")).status == 401


async def _temporary(client: Client) -> dict[str, str]:
    async with client.session.put(
        client.sim.url + "/meta-data/latest/api/token",
        headers={"X-Metadata-Token-Ttl-Seconds": "21600"},
    ) as resp:
        assert resp.status == 200
        session_token = await resp.text()
    async with client.session.get(
        client.sim.url + "/openstack/latest/securitykey",
        headers={"X-Metadata-Token": session_token},
    ) as resp:
        assert resp.status == 200
        credential: dict[str, str] = (await resp.json())["credential"]
    return credential


async def test_metadata_temporary_credentials(sim: Simulator, client: Client) -> None:
    cred = await _temporary(client)
    assert set(cred) == {"access", "secret", "securitytoken", "expires_at"}
    expires = datetime.strptime(cred["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert expires > datetime.now(UTC)
    assert parse_timestamp(cred["expires_at"]) == expires
    ak, sk = cred["access"], cred["secret"]
    ok = await client.call(
        "GET", _show(sim), security_token=cred["securitytoken"], access_key=ak, secret_key=sk
    )
    assert ok.status == 200
    missing = await client.call("GET", _show(sim), access_key=ak, secret_key=sk)
    _assert_0301(missing, "verify aksk signature fail")
    wrong = await client.call(
        "GET", _show(sim), security_token="other", access_key=ak, secret_key=sk
    )
    assert wrong.status == 401
    sim.add_fault("token_expiry")
    expired = await client.call(
        "GET", _show(sim), security_token=cred["securitytoken"], access_key=ak, secret_key=sk
    )
    _assert_0301(expired, f"Get secretKey failed,ak:{cred['access']},err:ak not exist")


async def test_metadata_requires_session_token(client: Client) -> None:
    url = client.sim.url
    async with client.session.put(url + "/meta-data/latest/api/token") as resp:
        assert resp.status == 400
    async with client.session.get(url + "/openstack/latest/securitykey") as resp:
        assert resp.status == 401
    headers = {"X-Metadata-Token": "forged"}
    async with client.session.get(url + "/openstack/latest/securitykey", headers=headers) as resp:
        assert resp.status == 401
