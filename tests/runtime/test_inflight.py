"""InFlight: a total cap, a cap per lane, and held runs given back oldest first among the
lanes that have room."""

from __future__ import annotations

import pytest

from watcher.runtime.inflight import InFlight


def test_caps_hold_and_give_back_oldest_first_where_there_is_room() -> None:
    slots = InFlight(total=3, per_lane=2)
    assert slots.admit("a1", "a") and slots.admit("a2", "a")
    assert not slots.admit("a3", "a")  # lane a is full
    assert slots.admit("b1", "b")
    assert not slots.admit("b2", "b")  # the total is reached
    assert not slots.admit("x1", None)  # no lane: the total still counts
    assert len(slots) == 3 and slots.held == 3
    assert slots.next_held() is None  # nothing may start while the total is full
    slots.release("b1")
    assert slots.next_held() == "b2"  # a3 is older but lane a is still full
    assert slots.admit("b2", "b")
    slots.release("a1")
    assert slots.next_held() == "a3"
    assert slots.admit("a3", "a")
    slots.release("a2")
    assert slots.next_held() == "x1"
    assert slots.next_held() is None and slots.held == 0


def test_a_held_run_forgotten_is_never_given_back() -> None:
    slots = InFlight(total=1, per_lane=1)
    assert slots.admit("a", "r")
    assert not slots.admit("b", "r") and slots.is_held("b")
    slots.unhold("b")
    slots.release("a")
    slots.release("a")  # twice is harmless
    assert slots.next_held() is None and len(slots) == 0


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="total >= 1"):
        InFlight(total=0, per_lane=1)
