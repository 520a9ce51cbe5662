"""Active probes: how many TCP probes one node sustains for 10k persistent instances, and the
loop's own latency (list p99 on one connection) with those probes running and without them."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from .results import Row
from .servers import (
    CONTEXT,
    HOST,
    PYTHON,
    Server,
    cpu_seconds,
    free_port,
    http_call,
    http_get,
    node_metrics,
    wait_until,
)

if TYPE_CHECKING:
    from .run import Run

PROBE_INSTANCES = 10_000
PROBE_SERVICES = 10  # 1,000 persistent instances each
PROBE_WINDOW_S = 20  # probes counted over this, after the warm-up
PROBE_WARMUP_S = 8  # every instance is first probed within one interval (2 s) of appearing
PREFIX = "bench-probe-"
# (key suffix, label, extra serve flags, the schedule's mean interval in s)
SCHEDULES = (
    ("", "default schedule (2 s + 0..1 s)", (), 2.5),
    ("_10s", "every 10 s + 0..2 s", ("--health-probe-interval-ms", "10000", "--health-probe-jitter-ms", "2000"), 11.0),
)
PROBE_FIGURES = (
    *(
        figure
        for key, label, _, _ in SCHEDULES
        for figure in (
            (f"probes_per_s{key}", f"probes: TCP probes/s, 10k persistent instances, {label}"),
            (f"probes_list_p99{key}", f"probes: list p99 on 1 connection, probing, {label}"),
        )
    ),
    ("probes_list_p99_off", "probes: list p99 on 1 connection, probes off"),
)


def serve_probe_target(port: int) -> None:
    """What every instance's cluster checks: a TCP port on loopback that accepts and closes."""
    import asyncio

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(accept, HOST, port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _put(node: Server, path: str, method: str = "PUT", **params: Any) -> None:
    url = f"{node.url}{CONTEXT}{path}?{urllib.parse.urlencode(params)}"
    status, body = http_call(method, url)
    if status != 200:
        raise RuntimeError(f"{method} {path} answered {status} {body[:200]!r}")


def _populate(run: Run, node: Server, target_port: int) -> None:
    """10 services whose DEFAULT cluster checks the target port (not each instance's), then
    10k persistent instances on 127.0.0.1 spread over them, then a 100-instance list service
    (persistent, unprobed)."""
    for index in range(PROBE_SERVICES):
        name = f"{PREFIX}{index:05d}"
        _put(node, "/v1/ns/service", "POST", serviceName=name)
        _put(
            node, "/v1/ns/cluster", serviceName=name, clusterName="DEFAULT", checkPort=target_port,
            useInstancePort4Check="false", healthChecker=json.dumps({"type": "TCP"}),
        )
    run.fill(node, PREFIX, PROBE_SERVICES, PROBE_INSTANCES, name="fill-probe", persistent=True)
    # The list service's instances neither beat nor answer probes: persistent, under NONE.
    _put(node, "/v1/ns/service", "POST", serviceName="bench-list-100-00000")
    _put(
        node, "/v1/ns/cluster", serviceName="bench-list-100-00000", clusterName="DEFAULT", checkPort=80,
        useInstancePort4Check="true", healthChecker=json.dumps({"type": "NONE"}),
    )
    run.fill(node, "bench-list-100-", 1, 100, name="fill-probe-list", persistent=True)


def _probe_totals(node: Server) -> tuple[float, float]:
    """(probes ended, unhealthy verdicts) so far, over every type and outcome."""
    values = node_metrics(node)
    ended = sum(v for k, v in values.items() if k.startswith("nacos_actors_health_probes_total{"))
    unhealthy = sum(
        v for k, v in values.items()
        if k.startswith("nacos_actors_health_probe_verdicts_total{") and 'verdict="unhealthy"' in k
    )
    return ended, unhealthy


def _list_p99(run: Run, node: Server, name: str) -> dict[str, Any]:
    url = f"{node.url}{CONTEXT}/v1/ns/instance/list?serviceName=bench-list-100-00000"
    status, body = http_get(url)
    if status != 200 or len(json.loads(body)["hosts"]) != 100:
        raise RuntimeError(f"list of bench-list-100-00000 answered {status}")
    return run.wrk(url, "fixed", duration=run.s.latency_duration, connections=1, name=name)


def bench_probes(run: Run) -> list[Row]:
    """A node with 10k TCP-probed persistent instances, all answered by one loopback port, on
    each schedule of SCHEDULES (the defaults: every 2 s plus up to 1 s; then every 10 s plus up
    to 2 s); its probe rate over PROBE_WINDOW_S, its CPU, and the list p99 of a 100-instance
    service on one connection, against the same node started with probes (and beat checks)
    off. On loopback the kernel's whole handshake is charged to the node's connect; to a remote
    instance the connect returns at once and the handshake runs elsewhere."""
    target_port = free_port()
    # The target shares the load core with wrk; at SCHED_IDLE it accepts only while wrk does not
    # need the core (the kernel answers the handshakes meanwhile; the backlog holds the rest),
    # so its 4,000 accepts a second do not show up as the node's latency in wrk's figures.
    target = run.procs.start(
        "probe-target",
        ["chrt", "--idle", "0", *run.load_prefix, PYTHON, "-m", "scripts.benchmarks", "--serve-probe-target",
         str(target_port)],
    )
    try:
        wait_until(lambda: _connects(target_port), target, "probe target")
        rows = [row for schedule in SCHEDULES for row in _with_probes(run, target_port, *schedule)]
        off = run.start_node("node-probes-off", health_checks=False)
        try:
            _populate(run, off, target_port)
            quiet = _list_p99(run, off, "wrk-probes-list-off")
        finally:
            run.stop_server(off)
        lat = quiet["latency_us"]
        rows.append(Row(
            "probes_list_p99_off", PROBE_FIGURES[-1][1], lat["p99"] / 1000, "ms",
            note=f"p50 {lat['p50'] / 1000:.2f} ms, {quiet['rps']:,.0f} req/s; the same node and data, "
                 "--health-check-enabled false",
            data=quiet,
        ))
        return rows
    finally:
        run.procs.stop(target)


def _with_probes(run: Run, target_port: int, key: str, label: str, extra: tuple[str, ...], mean_s: float) -> list[Row]:
    node = run.start_node(f"node-probes{key}", health_checks=True, extra=extra)
    try:
        _populate(run, node, target_port)
        time.sleep(PROBE_WARMUP_S)
        ended, unhealthy_before = _probe_totals(node)
        cpu = cpu_seconds(node.pid)
        started = time.monotonic()
        time.sleep(PROBE_WINDOW_S)
        ended_after, unhealthy_after = _probe_totals(node)
        seconds = time.monotonic() - started
        cpu_share = (cpu_seconds(node.pid) - cpu) / seconds
        rate = (ended_after - ended) / seconds
        expected = PROBE_INSTANCES / mean_s
        loaded = _list_p99(run, node, f"wrk-probes-list{key}")
        values = node_metrics(node)
        targets = values.get("nacos_actors_health_probe_targets", 0)
    finally:
        run.stop_server(node)
    lat = loaded["latency_us"]
    return [
        Row(
            f"probes_per_s{key}", f"probes: TCP probes/s, 10k persistent instances, {label}", rate, "probes/s",
            note=f"{targets:,.0f} targets, {rate / expected:.0%} of the schedule's {expected:,.0f}/s; node CPU "
                 f"{cpu_share:.0%} of a core; {unhealthy_after - unhealthy_before:.0f} unhealthy verdicts in the window",
            data={"rate": rate, "cpu_share": cpu_share, "targets": targets},
        ),
        Row(
            f"probes_list_p99{key}", f"probes: list p99 on 1 connection, probing, {label}", lat["p99"] / 1000, "ms",
            note=f"p50 {lat['p50'] / 1000:.2f} ms, {loaded['rps']:,.0f} req/s on 1 connection while probing",
            data=loaded,
        ),
    ]


def _connects(port: int) -> bool:
    import socket

    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
