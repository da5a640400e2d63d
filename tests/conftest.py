"""Shared fixtures: where the read-only shared fixtures live."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_fixture(name: str) -> Any:
    """Load a JSON fixture from tests/fixtures (copies of ../shared/fixtures live there)."""
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def seed_workflow_raw() -> dict[str, Any]:
    data: dict[str, Any] = load_fixture("seed_workflow.json")
    return data


# -- PostgreSQL (tests/pg.py): one server and one private database per xdist worker -------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """The server PostgreSQL tests use; FAILS (never skips silently) when there is none."""
    from tests import pg

    if os.environ.get(pg.SKIP_ENV, "") not in ("", "0"):
        pytest.skip(f"PostgreSQL tests skipped: {pg.SKIP_ENV} is set")
    try:
        server = pg.resolve()
    except pg.PgUnavailable as exc:
        pytest.fail(f"PostgreSQL unavailable: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_database(pg_server: Any) -> Iterator[str]:
    """DSN of an empty database private to this test session (or xdist worker)."""
    from tests import pg

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with contextlib.ExitStack() as stack:
        try:
            dsn = stack.enter_context(pg.private_database(pg_server, worker))
        except pg.PgUnavailable as exc:
            pytest.fail(f"PostgreSQL unavailable: {exc}", pytrace=False)
        yield dsn


@pytest.fixture
def pg_dsn(pg_database: str) -> Iterator[str]:
    """DSN whose search_path is a fresh, empty schema for this one test."""
    from tests import pg

    with pg.private_schema(pg_database) as dsn:
        yield dsn
