"""The node's wall clock, in the unit every core and actor takes `now` in."""

from __future__ import annotations

import time


def wall_clock_ms() -> int:
    """Milliseconds since the epoch (what Nacos serves as lastRefTime). Any thread."""
    return time.time_ns() // 1_000_000
