"""watcher.textsafe: untrusted text cannot drive a terminal or forge lines."""

from __future__ import annotations

import pytest

from watcher.textsafe import inert, inert_tree

HOSTILE = [
    ("\x1b[31mred\x1b[0m", "red"),  # SGR colour
    ("\x1b[2J\x1b[Hclear", "clear"),  # clear screen, home
    ("\x1b]0;title\x07x", "x"),  # OSC set title, BEL-terminated
    ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink, ST
    ("\x9b31mc1", "c1"),  # 8-bit CSI
    ("ok\rEVIL", "okEVIL"),  # CR rewinds the line
    ("a\u202eevil\u202cb", "aevilb"),  # RLO ... PDF
    ("\u2066iso\u2069\u200e\u200f\u061c", "iso"),  # isolates and marks
    ("nul\x00bel\x07del\x7f", "nulbeldel"),
    ("x\x1bcy", "xcy"),  # a two-character ESC sequence loses its ESC
    ("unterminated \x1b]0;title", "unterminated "),
]


@pytest.mark.parametrize(("raw", "clean"), HOSTILE)
def test_escapes_and_controls_are_removed(raw: str, clean: str) -> None:
    assert inert(raw) == clean


@pytest.mark.parametrize("brk", ["\n", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"])
def test_one_line_mode_turns_every_line_break_into_a_space(brk: str) -> None:
    assert inert(f"name{brk}Subject: fake") == "name Subject: fake"


def test_multiline_mode_keeps_newlines_and_tabs_only() -> None:
    assert inert("a\tb\r\nc\u2028d\x1b[1m", multiline=True) == "a\tb\nc\nd"


def test_printable_text_is_returned_unchanged() -> None:
    text = "集群 prod-01 v1.28.15-r20 ✓ → done"
    assert inert(text) is text


def test_inert_tree_cleans_nested_strings_and_keys() -> None:
    tree = {"a\x1b[1m": ["x\ny", {"k": "\u202ev"}], "n": 3, "none": None}
    assert inert_tree(tree) == {"a": ["x y", {"k": "v"}], "n": 3, "none": None}
