"""Shared fixtures: where the read-only shared fixtures live."""

from __future__ import annotations

import json
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
