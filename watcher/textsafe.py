"""Make untrusted text inert before it reaches a terminal, a log line or a message.

Strings from the cloud (cluster names, versions, phases, task types, API error messages)
are chosen by whoever controls the account or the network path. Printed raw they can
recolour or clear a terminal (ANSI CSI), set its title or plant a hyperlink (OSC), hide
text behind a carriage return, reorder a line with bidi overrides (Trojan Source), or,
with a newline, forge a line of their own ("Subject: ..." in an e-mail body, a fake row
in ``check``). This is the ONE sanitiser every output edge uses: ``check``, ``events``,
the console sender, and every value a notification template interpolates.

Rules: CSI and string sequences (OSC, DCS, ...) are removed whole (no ``[31m`` debris), every other
C0/C1 control, DEL, bidi mark, other invisible format character (zero-width, tag
characters) and unassigned code point is removed, a lone surrogate becomes U+FFFD; CR is removed;
in ``multiline`` text newlines and tabs survive, otherwise any line break becomes a space.
Pure functions; no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

# ESC-introduced sequences, 7-bit and 8-bit: CSI (ESC [ or 0x9b) params/intermediates/final;
# OSC, DCS, SOS, PM, APC (ESC ] P X ^ _ or 0x9d 0x90 0x98 0x9e 0x9f) up to BEL or ST (or the
# end of the text). Other ESC sequences lose their ESC (below), which leaves plain text.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
)
# Line breaks that are not "\n": CRLF and lone CR are dropped (a CR rewinds the line),
# VT, FF, NEL (U+0085), LINE/PARAGRAPH SEPARATOR count as a newline.
_BREAKS = re.compile(r"[\x0b\x0c\x85\u2028\u2029]")
# What is left to remove: C0 controls but tab and newline, DEL, C1 controls, the bidi
# embeddings/overrides/isolates and marks (LRM, RLM, ALM), and the BOM/zero-width no-break.
_CONTROLS = re.compile(
    r"[\x00-\x08\x0d-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_LINE_BREAKS = re.compile(r"[\t\n]+")
# Whatever the lists above miss is judged by its Unicode category: other format characters
# (zero-width spaces and joiners, soft hyphen, tag characters that smuggle invisible ASCII,
# interlinear annotations) and unassigned code points are removed; a lone surrogate (JSON
# allows "\ud800") cannot even be encoded as UTF-8, so it becomes U+FFFD.
_INVISIBLE = frozenset({"Cc", "Cf", "Cn"})


def inert(text: object, *, multiline: bool = False) -> str:
    """``text`` as a string that cannot drive a terminal or forge lines.

    With ``multiline=False`` (names, versions, error messages, table cells) the result is
    one line: newlines and tabs become single spaces. ``multiline=True`` keeps ``\\n`` and
    ``\\t`` for bodies whose line structure the watcher itself made (a rendered template).
    """
    value = text if isinstance(text, str) else str(text)
    if value.isprintable():  # the common case: nothing to do (also excludes \n and \t)
        return value
    value = _ESCAPES.sub("", value)
    value = _BREAKS.sub("\n", value)
    value = _CONTROLS.sub("", value)
    if not value.replace("\n", "").replace("\t", "").isprintable():
        value = "".join(_by_category(c) for c in value)
    if not multiline:
        value = _LINE_BREAKS.sub(" ", value)
    return value


def _by_category(char: str) -> str:
    if char in "\n\t" or char.isprintable():
        return char
    category = unicodedata.category(char)
    if category == "Cs":
        return "\ufffd"
    return "" if category in _INVISIBLE else char  # spaces (NBSP...), private use: kept


def inert_tree(value: Any) -> Any:
    """A copy of JSON-like ``value`` with every string (keys too) made inert, one line."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, Mapping):
        return {inert_tree(k): inert_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [inert_tree(v) for v in value]
    return value
