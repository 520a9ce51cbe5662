"""The shipped Grafana dashboard and the metric names its PromQL queries read (test helper)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "config" / "grafana" / "nacos-actors.json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_EQUAL_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"]*)"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![A-Za-z0-9_:])(?!\s*\()")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}


@dataclass(frozen=True)
class Query:
    panel: str
    expr: str


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    """Every panel target's PromQL expression (rows included)."""
    for panel in dashboard["panels"]:
        for nested in [panel, *panel.get("panels", [])]:
            for target in nested.get("targets", []):
                yield Query(nested["title"], target["expr"])


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (series selectors, not functions or labels)."""
    text = _MATCHERS.sub("", _STRING.sub('""', expr))
    text = _GROUPING.sub("", _RANGE.sub("", text))
    return {name for name in _IDENTIFIER.findall(text) if name not in KEYWORDS}


def equality_matchers(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric, {label: value}) of each selector's `label="value"` matchers without variables."""
    found = []
    for metric, body in _SELECTOR.findall(expr):
        labels = {label: value for label, value in _EQUAL_MATCHER.findall(body) if "$" not in value}
        found.append((metric, labels))
    return found
