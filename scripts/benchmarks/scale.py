"""The scale rows: a fresh node filled with --scale-instances instances."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .results import Row
from .servers import CONTEXT, http_get, rss_bytes
from .wrk import latency_row

if TYPE_CHECKING:
    from .run import Run


def bench_scale(run: Run) -> list[Row]:
    """fill a fresh node with --scale-instances; fill time and rate, RSS, list p99 before/after.

    Health checks are off: nothing beats, and the fill takes minutes.
    """
    n = run.s.scale_instances
    per = run.s.scale_per_service
    services = max(1, n // per)
    node = run.start_node("node-scale", health_checks=False)
    try:
        run.fill(node, "scale-probe-", 1, 100, base=0, name="fill-scale-probe")
        probe = f"{node.url}{CONTEXT}/v1/ns/instance/list?serviceName=scale-probe-00000"
        http_get(probe)
        rss_before = rss_bytes(node.pid)
        lat_before = run.wrk(probe, "fixed", duration=run.s.latency_duration, connections=1, name="wrk-scale-lat-before")
        result = run.fill(node, "scale-", services, n, base=0, name="fill-scale", measured=True)
        seconds = result["reached_s"]
        _, count = run.node_counts(node)
        rss_after = rss_bytes(node.pid)
        lat_after = run.wrk(probe, "fixed", duration=run.s.latency_duration, connections=1, name="wrk-scale-lat-after")
    finally:
        stopped = run.stop_server(node, timeout=60)
    fill_note = f"{services:,} services x {per}; wrk {run.s.connections} connections; no beats, health checks off"
    if result["error_count"]:
        fill_note += f"; ERRORS {result['errors']}"
    rows = [
        Row("scale_fill_time", f"scale: time to fill {n:,} instances", seconds, "s", note=fill_note, data=result),
        Row("scale_fill_rate", "scale: fill rate", n / seconds, "inst/s", throughput=True,
            note=f"node holds {count:,} instances at the end", data={"timeline_index": result["timeline_index"]}),
        Row("scale_rss_before", "scale: node RSS before fill", rss_before / 2**20, "MiB"),
        Row("scale_rss_after", "scale: node RSS after fill", rss_after / 2**20, "MiB"),
        Row("scale_rss_per_instance", "scale: RSS per instance", (rss_after - rss_before) / n, "B/inst"),
        latency_row("scale_list_p99_before", "scale: list p99, 100 instances, before fill", lat_before),
        latency_row("scale_list_p99_after", "scale: list p99, 100 instances, after fill", lat_after),
    ]
    note = f"SIGTERM to exit: {stopped['stop_s']:.1f} s, exit {stopped['exit_code']}"
    rows[-1].note += f"; {note}"
    return rows
