"""Which metric names a PromQL expression (or a Grafana query) reads, and which names a
/metrics page exports; so tests can check that alerts and dashboards use real metrics.

Not a PromQL parser: the expressions are checked for syntax by promtool; this only needs the
selectors. Strings, label matchers, ranges, grouping clauses and Grafana variables are cut
out; what remains as an identifier not followed by "(" and not a keyword is a metric name.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
# An identifier that does not start inside a number or another name (5m, 1e3, a:b).
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan", "start", "end",
    }
)  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<query>.*?)\s*(?:,\s*\w+\s*)?\)\s*$")
# Sample names each metric family type exports besides its own name.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (functions, keywords and labels left out)."""
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def grafana_query_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus query: PromQL or ``label_values(expr, label)``."""
    match = _LABEL_VALUES.match(query)
    return metric_names(match.group("query") if match else query)


def exported_names(exposition: str) -> set[str]:
    """Every sample name a /metrics page can export: each family's own name plus the
    suffixes of its type, whether or not it has samples yet (a counter nobody incremented
    still declares itself with # HELP and # TYPE)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names
