"""WatchKey is the one encode/decode of store keys; the Registry indexes watches by it."""

from __future__ import annotations

import pytest

from watcher.runtime.registry import FINISHED_SHOWN, KeyKind, Registry, WatchKey


@pytest.mark.parametrize(
    ("key", "text"),
    [
        (WatchKey.workflow("prod", "c271e39e"), "prod/c271e39e"),
        (WatchKey.discovery("prod"), "prod/_discovery"),
        (WatchKey.of_target("prod"), "prod/_target"),
        (WatchKey.workflow("team/prod", "wf"), "team/prod/wf"),  # a "/" in a target name
    ],
)
def test_keys_round_trip_through_the_stored_string(key: WatchKey, text: str) -> None:
    assert key.encode() == str(key) == text
    assert WatchKey.decode(text) == key


@pytest.mark.parametrize("text", ["", "noslash", "prod/", "/wf", "prod/_unknown"])
def test_strings_of_no_known_shape_decode_to_none(text: str) -> None:
    assert WatchKey.decode(text) is None


def test_a_target_is_not_a_prefix_of_another() -> None:
    """The old prefix test matched "prod/..." for a target named "prod" AND "prod/x"."""
    reg: Registry[str, str, str] = Registry()
    reg.add(WatchKey.workflow("prod", "a"), "watch-a")
    reg.add(WatchKey.workflow("prod/x", "b"), "watch-b")
    live, _ = reg.remove_target("prod")
    assert live == [(WatchKey.workflow("prod", "a"), "watch-a")]
    assert list(reg.watches) == [WatchKey.workflow("prod/x", "b")]


def test_finished_watches_stay_shown_up_to_the_bound() -> None:
    reg: Registry[str, str, str] = Registry()
    for i in range(FINISHED_SHOWN + 2):
        key = WatchKey.workflow("prod", f"wf{i}")
        reg.add(key, f"w{i}")
        reg.finish(key)
    assert not reg.watches and len(reg.finished) == FINISHED_SHOWN
    assert reg.shown()[0] == "w2"  # the oldest went first
    assert all(k.kind is KeyKind.WORKFLOW for k in reg.finished)
