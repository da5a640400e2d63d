"""The signer reproduces every vector the official SDK produced (fixtures/signer_vectors.json)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_fixture
from watcher.cloud import signer

DATA = load_fixture("signer_vectors.json")


@pytest.mark.parametrize("vector", DATA["vectors"], ids=lambda v: v["name"])
def test_vector(vector: dict[str, Any]) -> None:
    body = (vector["body"] or "").encode()
    query = [tuple(pair) for pair in vector["query"]]
    headers = dict(vector["headers"])
    headers["Host"] = vector["host"]
    canonical = signer.canonical_request(vector["method"], vector["path"], query, headers, body)
    assert canonical == vector["canonical_request"]
    date = headers["X-Sdk-Date"]
    assert signer.string_to_sign(canonical, date) == vector["string_to_sign"]
    sent = signer.sign(
        vector["method"],
        vector["host"],
        vector["path"],
        query,
        vector["headers"],
        body,
        access_key=DATA["ak"],
        secret_key=DATA["sk"],
    )
    assert sent["Authorization"] == vector["authorization"]
    assert signer.parse_authorization(sent["Authorization"]) is not None
