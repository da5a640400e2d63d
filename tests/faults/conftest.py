"""Fixtures shared by the fault tests."""

from tests.faults.disk import small_disk

__all__ = ["small_disk"]
