"""The beat-soak rows: many instances light-beating on a paced schedule with health checks on."""

from __future__ import annotations

import concurrent.futures
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .results import Row
from .servers import (
    CONTEXT,
    Server,
    cpu_seconds,
    full_collections,
    health_marks,
    http_get,
    rss_bytes,
)

if TYPE_CHECKING:
    from .run import Run


SOAK_FIGURES = (
    ("beat_soak_false_unhealthy", "beat soak: false unhealthy marks"),
    ("beat_soak_false_removed", "beat soak: false removals"),
    ("beat_soak_rate", "beat soak: achieved beat rate"),
    ("beat_soak_cpu", "beat soak: node CPU"),
    ("beat_soak_rss", "beat soak: node RSS at the end"),
)
SOAK_PREFIX = "bench-soak-"
SOAK_PER_SERVICE = 100
SOAK_SAMPLE_S = 2.0


@dataclass
class SoakWatch:
    """What the soak's watcher saw while the beats ran."""

    samples: int = 0  # list answers read
    unhealthy_hosts: int = 0  # hosts answered healthy=false, summed over the samples
    missing_hosts: int = 0  # hosts fewer than registered, summed over the samples
    rss_max: int = 0
    first_mark_s: float | None = None  # seconds into the soak an unhealthy/removed mark first showed


def soak_service_sizes(instances: int, services: int) -> dict[int, int]:
    """Five services spread over the soak's (instance k is in service k mod services) -> their sizes."""
    picks = sorted({0, services // 4, services // 2, 3 * services // 4, services - 1})
    return {n: instances // services + (1 if n < instances % services else 0) for n in picks}


def watch_soak(node: Server, sizes: dict[int, int], load: concurrent.futures.Future, started: float) -> SoakWatch:
    """Until the beat load ends, every 2 s: list a few services (hosts not healthy, hosts missing),
    and read the node's health transitions and RSS."""
    watch = SoakWatch()
    while not load.done():
        for n, size in sizes.items():
            status, body = http_get(f"{node.url}{CONTEXT}/v1/ns/instance/list?serviceName={SOAK_PREFIX}{n:05d}")
            hosts = json.loads(body)["hosts"] if status == 200 else []
            watch.samples += 1
            watch.unhealthy_hosts += sum(1 for host in hosts if not host["healthy"])
            watch.missing_hosts += max(0, size - len(hosts))
        marks = health_marks(node)
        if watch.first_mark_s is None and (marks["unhealthy"] or marks["removed"]):
            watch.first_mark_s = time.monotonic() - started
        watch.rss_max = max(watch.rss_max, rss_bytes(node.pid))
        concurrent.futures.wait([load], timeout=SOAK_SAMPLE_S)
    return watch


def bench_beat_soak(run: Run) -> list[Row]:
    """50k instances light-beating every 5 s for 120 s, health checks on: false unhealthy/removed marks.

    (--soak-instances, --soak-interval, --soak-seconds.) Also the achieved beat rate, node CPU and RSS.
    """
    s = run.s
    n = s.soak_instances
    services = max(1, n // SOAK_PER_SERVICE)
    rate = n / s.soak_interval
    node = run.start_node("node-soak", health_checks=True)
    try:
        fill = run.fill(node, SOAK_PREFIX, services, n, name="fill-soak")
        # beats go in registration order, so no instance waits longer than the fill for its first
        marks_before = health_marks(node)
        gc_before = full_collections(node)
        cpu_before, started = cpu_seconds(node.pid), time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            load = pool.submit(
                run.wrk, node.url, "beat",
                {"path": f"{CONTEXT}/v1/ns/instance/beat", "prefix": SOAK_PREFIX, "services": services,
                 "population": n},
                duration=s.soak_seconds, rate=rate, name="wrk-soak",
            )
            watch = watch_soak(node, soak_service_sizes(n, services), load, started)
            beats = load.result()
        cpu = (cpu_seconds(node.pid) - cpu_before) / (time.monotonic() - started)
        marks = health_marks(node)
        rss = rss_bytes(node.pid)
        beats["node_full_gc"] = full_collections(node) - gc_before
    finally:
        run.stop_server(node)
    return soak_rows(run, services, rate, fill, beats, watch, marks_before, marks, cpu, rss)


def soak_rows(
    run: Run, services: int, rate: float, fill: dict[str, Any], beats: dict[str, Any], watch: SoakWatch,
    marks_before: dict[str, int], marks: dict[str, int], cpu: float, rss: int,
) -> list[Row]:
    """The beat soak rows; notes say the set-up, what the watcher saw and how well the pace held."""
    s = run.s
    per = s.soak_instances // services
    setup = (f"{s.soak_instances:,} instances ({services} services x {per}), a light beat each every "
             f"{s.soak_interval} s for {s.soak_seconds} s, health checks on")
    seen = f"{watch.samples} list answers sampled: {watch.unhealthy_hosts} unhealthy, {watch.missing_hosts} missing hosts"
    if watch.first_mark_s is not None:
        seen += f"; first mark {watch.first_mark_s:.0f} s in"
    gap = fill["reached_s"] or 0.0
    lag_s = beats["lag_max_us"] / 1e6
    removed_note = (f"{marks['revived']} revived; {beats['bad']} beats not answered 10200; the fill took {gap:.1f} s "
                    f"(the longest wait for a first beat, beats go in registration order); longest gap between "
                    f"two beats of an instance <= {s.soak_interval + lag_s:.1f} s (interval + schedule lag max)")
    if max(gap, s.soak_interval + lag_s) > 12:
        removed_note += "; WARNING: within 3 s of the 15 s beat timeout, marks would be the harness's fault"
    if any(marks_before.values()):
        removed_note += f"; marks before the beats began {marks_before}"
    lat = beats["latency_us"]
    rate_note = (f"target {rate:,.0f}/s (wrk paced, {s.connections} connections); {beats['requests']:,} beats; "
                 f"behind schedule: max {lag_s * 1000:,.0f} ms, {beats['late']:,} beats > 10 ms, "
                 f"{beats['late_100ms']:,} > 100 ms, {beats['late_1s']:,} > 1 s; "
                 f"answer p50 {lat['p50'] / 1000:.1f} ms, p99 {lat['p99'] / 1000:.1f} ms")
    if beats["error_count"]:
        rate_note += f"; ERRORS {beats['errors']}"
    data = {"fill": fill, "beats": beats, "watch": asdict(watch), "marks_before": marks_before, "marks": marks}
    return [
        Row("beat_soak_false_unhealthy", SOAK_FIGURES[0][1], marks["unhealthy"], "marks", note=f"{setup}; {seen}",
            data=data),
        Row("beat_soak_false_removed", SOAK_FIGURES[1][1], marks["removed"], "marks", note=removed_note),
        Row("beat_soak_rate", SOAK_FIGURES[2][1], beats["rps"], "beats/s", note=rate_note),
        Row("beat_soak_cpu", SOAK_FIGURES[3][1], cpu * 100, "%",
            note=f"of one core, over the soak; {beats['node_full_gc']} full (gen-2) GC collections meanwhile"),
        Row("beat_soak_rss", SOAK_FIGURES[4][1], rss / 2**20, "MiB", note=f"max sampled {watch.rss_max / 2**20:,.1f} MiB"),
    ]
