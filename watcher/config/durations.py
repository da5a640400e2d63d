"""Human durations in the config file: "90s", "15m", "4h", "1h30m", "2d" or plain seconds.

Operators write policy times the way they say them; the rest of the code wants timedelta.
Parsing never echoes the rejected text, because a misplaced secret must not reach a log.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
# No policy time, retention or silence is meaningfully longer; beyond it ``timedelta`` itself
# overflows (a traceback instead of a config error), or ``now + duration`` passes year 9999
# and fails every poll. The cloud's time range leaves room for this much (core.timeparse).
MAX_DURATION = timedelta(days=36500)

DURATION_HINT = "expected a duration such as 90s, 15m, 4h, 1h30m or a number of seconds"


def parse_duration(value: Any) -> timedelta:
    """Parse a duration; numbers are seconds. Raises ValueError without quoting the input."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(DURATION_HINT)
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if _NUMBER.match(text):
            seconds = float(text)
        elif text and _WHOLE.match(text):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(DURATION_HINT)
    else:
        raise ValueError(DURATION_HINT)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds, zero or more")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError("a duration must be at most 36500d (100 years)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render compactly and losslessly to whole seconds: 5400 s -> "1h30m", 0 -> "0s"."""
    total = value.total_seconds()
    whole = int(total)
    if total != whole:
        return f"{total:g}s"
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A timedelta field that accepts human durations and dumps back to the same notation."""
