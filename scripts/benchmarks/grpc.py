"""The gRPC rows (Nacos 2.x/3.x clients' protocol): register and query throughput as ratios to a
bare grpc.aio unary handler measured in the same run with the same load, push latency over gRPC,
and idle connections with the node's memory.

The load is grpc_load.py's raw client (our generated stubs, Payloads shaped as nacos-sdk-python
3.2.0 sends them) in GRPC_LOAD_PROCESSES worker processes on the load CPU, each with
GRPC_LOAD_CHANNELS connections that keep one request in flight. The ceiling, grpc_load's bare
server, answers every unary call with a fixed Payload, on asyncio's default loop (grpc.aio's
own poller does the I/O either way).
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import subprocess
import time
from typing import TYPE_CHECKING, Any

from .results import Row, percentile
from .servers import HOST, PYTHON, Server, free_port, node_metrics, rss_bytes, wait_until

if TYPE_CHECKING:
    from .run import Run

GRPC_REGISTER_FIGURES = (
    ("grpc_ceiling", "gRPC ceiling: bare grpc.aio unary handler"),
    ("grpc_register", "gRPC register (InstanceRequest)"),
)
GRPC_QUERY_FIGURES = (("grpc_query", "gRPC query (ServiceQueryRequest, 100 instances)"),)
GRPC_PUSH_FIGURES = (
    ("grpc_push_p50", "gRPC push latency p50: register -> NotifySubscriberRequest at a subscriber"),
    ("grpc_push_p99", "gRPC push latency p99"),
)
GRPC_IDLE_FIGURES = (
    ("grpc_idle_connections", "gRPC idle connections held by one node"),
    ("grpc_idle_rss_per_connection", "node RSS per idle gRPC connection"),
)
GRPC_LOAD_PROCESSES = 2
GRPC_LOAD_CHANNELS = 32  # per process: 64 connections in all, like wrk's -c64
GRPC_START_DELAY_S = 3.0  # the workers start their loads together, this long after being started
GRPC_WARMUP_S = 1
QUERY_SERVICE_PREFIX = "bench-grpc-query-"
PUSH_SERVICE = "bench-grpc-push"
PUSH_PROBE_PORT = 21_000
IDLE_PROCESSES = 10
IDLE_TARGET = 10_000


def grpc_target(node: Server) -> str:
    """The node's gRPC address (Server.grpc_port when the harness chose one, else HTTP + 1000)."""
    return f"{HOST}:{getattr(node, 'grpc_port', 0) or node.port + 1000}"


def worker_argv(run: Run, config: dict[str, Any]) -> list[str]:
    return run.load_prefix + [PYTHON, "-m", "scripts.benchmarks.grpc_load", json.dumps(config)]


def grpc_load(run: Run, target: str, kind: str, name: str, services: int = 1, prefix: str = "bench-grpc-") -> dict:
    """GRPC_LOAD_PROCESSES workers of `kind` against `target` for the run's duration; the sum."""
    start_at = time.time() + GRPC_START_DELAY_S
    procs = [
        run.procs.start(f"{name}-{i}", worker_argv(run, {
            "mode": "load", "target": target, "kind": kind, "channels": GRPC_LOAD_CHANNELS, "warmup": GRPC_WARMUP_S,
            "duration": run.s.duration, "services": services, "prefix": prefix, "worker": i, "start_at": start_at,
        }), capture=True)
        for i in range(GRPC_LOAD_PROCESSES)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=run.s.duration + GRPC_WARMUP_S + GRPC_START_DELAY_S + 60)
        run.procs.stop(proc)
        if proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"{name}: a load worker exited with {proc.returncode} (see its log)")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    errors: dict[str, int] = {}
    for result in results:
        for text, count in result["errors"].items():
            errors[text] = errors.get(text, 0) + count
    requests = sum(r["requests"] for r in results)
    return {"rps": requests / run.s.duration, "requests": requests, "errors": errors,
            "p50_ms": statistics.fmean(r["p50_ms"] for r in results),
            "p99_ms": max(r["p99_ms"] for r in results), "workers": results}


def start_grpc_ceiling(run: Run) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = run.procs.start("grpc-ceiling", run.server_prefix + [
        PYTHON, "-m", "scripts.benchmarks.grpc_load", json.dumps({"mode": "ceiling", "port": port})])
    target = f"{HOST}:{port}"

    def listening() -> bool:
        import socket

        with socket.create_connection((HOST, port), timeout=1):
            return True

    wait_until(listening, proc, "grpc ceiling server")
    return proc, target


class GrpcSession:
    """The ceiling measured by the grpc-register row, for the grpc-query row's ratio too."""

    ceiling_rps: float | None = None


SESSION = GrpcSession()


def measure_ceiling(run: Run) -> dict[str, Any]:
    proc, target = start_grpc_ceiling(run)
    try:
        result = grpc_load(run, target, "query", "grpc-load-ceiling")
    finally:
        run.procs.stop(proc)
    if result["errors"]:
        raise RuntimeError(f"the gRPC ceiling answered errors: {result['errors']}")
    SESSION.ceiling_rps = result["rps"]
    return result


def load_row(key: str, figure: str, result: dict[str, Any], ceiling: float | None, note: str) -> Row:
    notes = [f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms", note]
    if result["errors"]:
        notes.append(f"ERRORS {sum(result['errors'].values())}: {next(iter(result['errors']))}")
    row = Row(key, figure, result["rps"], "req/s", note="; ".join(notes), data=result)
    row.ratio = result["rps"] / ceiling if ceiling else None
    return row


def load_note() -> str:
    return (f"{GRPC_LOAD_PROCESSES} raw-client processes x {GRPC_LOAD_CHANNELS} connections, one request in flight "
            "each; ratio to the bare grpc.aio handler under the same load")


def bench_grpc_register(run: Run) -> list[Row]:
    """gRPC InstanceRequest (register) throughput, and the bare grpc.aio ceiling it is a ratio to."""
    ceiling = measure_ceiling(run)
    node = run.start_node("node-grpc-register", health_checks=False)
    try:
        result = grpc_load(run, grpc_target(node), "register", "grpc-load-register", services=100,
                           prefix="bench-grpc-reg-")
    finally:
        run.stop_server(node)
    return [
        load_row("grpc_ceiling", GRPC_REGISTER_FIGURES[0][1], ceiling, None,
                 "the bare handler answers a fixed Payload; " + load_note()),
        load_row("grpc_register", GRPC_REGISTER_FIGURES[1][1], result, SESSION.ceiling_rps,
                 "a new ephemeral instance per request over 100 services; " + load_note()),
    ]


def bench_grpc_query(run: Run) -> list[Row]:
    """gRPC ServiceQueryRequest throughput on a 100-instance service, as a ratio to the bare handler."""
    if SESSION.ceiling_rps is None:
        measure_ceiling(run)
    node = run.start_node("node-grpc-query", health_checks=False)
    try:
        # the fill and the load name services alike: prefix + 5 digits, here bench-grpc-query-00000
        run.fill(node, QUERY_SERVICE_PREFIX, 1, 100, name="fill-grpc-query")
        result = grpc_load(run, grpc_target(node), "query", "grpc-load-query", services=1,
                           prefix=QUERY_SERVICE_PREFIX)
    finally:
        run.stop_server(node)
    if not result["requests"]:
        raise RuntimeError(f"no query succeeded: {result['errors']}")
    return [load_row("grpc_query", GRPC_QUERY_FIGURES[0][1], result, SESSION.ceiling_rps,
                     "every answer lists 100 instances; " + load_note())]


# -- push latency --------------------------------------------------------------------------


async def probe_grpc_pushes(target: str, count: int, rate: int) -> tuple[dict[int, int], dict[int, int], dict]:
    """A subscriber connection and a registrar connection (grpc_load.Connection); `count` probes
    at `rate`/s, each registering port PUSH_PROBE_PORT+i and deregistering the one before.
    Returns (port -> ns before its register was sent, port -> ns its first push arrived, counts)."""
    from .grpc_load import Connection, instance_request, subscribe_request

    first_seen: dict[int, int] = {}
    counts = {"pushes": 0, "stale": 0}
    last_ref = [-1]

    def on_push(body: dict[str, Any], arrived: int) -> None:
        counts["pushes"] += 1
        info = body.get("serviceInfo") or {}
        ref = int(info.get("lastRefTime", 0))
        if ref <= last_ref[0]:
            counts["stale"] += 1
            return
        last_ref[0] = ref
        for host in info.get("hosts") or []:
            first_seen.setdefault(int(host["port"]), arrived)

    subscriber = Connection(target, on_push=on_push)
    registrar = Connection(target)
    await subscriber.open()
    await registrar.open()
    await asyncio.sleep(0.2)
    kind, body = await subscriber.request(subscribe_request(PUSH_SERVICE))
    if kind != "SubscribeServiceResponse":
        raise RuntimeError(f"subscribe answered {kind} {body}")
    sent: dict[int, int] = {}
    next_at = time.monotonic()
    for i in range(count):
        pause = next_at - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        next_at = max(next_at, time.monotonic()) + 1 / rate
        port = PUSH_PROBE_PORT + i
        sent[port] = time.time_ns()
        kind, body = await registrar.request(instance_request(PUSH_SERVICE, port))
        if kind != "InstanceResponse":
            raise RuntimeError(f"register answered {kind} {body}")
        if i:
            await registrar.request(instance_request(PUSH_SERVICE, port - 1, "deregisterInstance"))
    await asyncio.sleep(1.0)
    await subscriber.close()
    await registrar.close()
    return sent, first_seen, counts


def bench_grpc_push(run: Run) -> list[Row]:
    """register (gRPC) -> NotifySubscriberRequest at a raw gRPC subscriber, p50/p99."""
    s = run.s
    node = run.start_node("node-grpc-push", health_checks=False)
    try:
        sent, seen, counts = asyncio.run(probe_grpc_pushes(grpc_target(node), s.push_seconds * s.push_rate,
                                                            s.push_rate))
        figures = node_metrics(node)
    finally:
        run.stop_server(node)
    latencies = [(seen[port] - at) / 1e6 for port, at in sent.items() if port in seen]
    if not latencies:
        raise RuntimeError(f"no push listed any of {len(sent)} probes ({counts})")
    missed = len(sent) - len(latencies)
    pushed = {k.split("{", 1)[1].rstrip("}"): int(v) for k, v in figures.items()
              if k.startswith("nacos_actors_grpc_pushes_total{")}
    ack_n = figures.get("nacos_actors_grpc_push_ack_seconds_count", 0)
    ack_ms = figures.get("nacos_actors_grpc_push_ack_seconds_sum", 0) / ack_n * 1000 if ack_n else 0.0
    note = (f"{len(latencies)} probes at {s.push_rate}/s over {s.push_seconds} s, no background load; "
            f"{missed} never seen; {counts['pushes']} pushes, {counts['stale']} stale; node's gRPC pushes {pushed}, "
            f"mean ack {ack_ms:.2f} ms")
    return [
        Row("grpc_push_p50", GRPC_PUSH_FIGURES[0][1], percentile(latencies, 50), "ms", note=note,
            data={"latencies_ms": [round(x, 3) for x in latencies], "counts": counts}),
        Row("grpc_push_p99", GRPC_PUSH_FIGURES[1][1], percentile(latencies, 99), "ms",
            note=f"max {max(latencies):.2f} ms"),
    ]


# -- idle connections ----------------------------------------------------------------------


def raise_fd_limit() -> int:
    """The soft open-files limit raised to the hard one (children inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def bench_grpc_idle(run: Run) -> list[Row]:
    """IDLE_TARGET idle gRPC connections (ServerCheck + ConnectionSetup each) held by one node: its RSS."""
    limit = raise_fd_limit()
    target_count = min(IDLE_TARGET, limit - 500)
    node = run.start_node("node-grpc-idle", health_checks=False)  # grpc_max_connections: 20,000
    holders: list[subprocess.Popen] = []
    try:
        time.sleep(1.0)
        rss_before = rss_bytes(node.pid)
        per = -(-target_count // IDLE_PROCESSES)
        started = time.monotonic()
        for i in range(IDLE_PROCESSES):
            channels = min(per, target_count - i * per)
            if channels <= 0:
                break
            holder = subprocess.Popen(
                worker_argv(run, {"mode": "idle", "target": grpc_target(node), "channels": channels}),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            holders.append(holder)
        reports = []
        for holder in holders:
            assert holder.stdout is not None
            line = holder.stdout.readline()
            reports.append(json.loads(line) if line.strip() else {"open": 0, "failed": -1, "first_error": "exited"})
        opened_s = time.monotonic() - started
        open_count = sum(r["open"] for r in reports)
        failed = sum(max(r["failed"], 0) for r in reports)
        retried = sum(r.get("retried", 0) for r in reports)
        time.sleep(5.0)  # settle, then hold: the node must keep them
        rss_after = rss_bytes(node.pid)
        figures = node_metrics(node)
        gauge = sum(v for k, v in figures.items() if k.startswith("nacos_actors_grpc_connections{"))
        closed = {k.split('"')[1]: int(v) for k, v in figures.items()
                  if k.startswith("nacos_actors_grpc_connections_closed_total{") and v}
        refused = int(sum(v for k, v in figures.items() if k.startswith("nacos_actors_grpc_connections_refused")))
        alive = 0
        for holder in holders:
            assert holder.stdin is not None and holder.stdout is not None
            holder.stdin.close()
            line = holder.stdout.readline()
            alive += json.loads(line)["still_streaming"] if line.strip() else 0
    finally:
        for holder in holders:
            if holder.poll() is None:
                holder.kill()
            holder.wait(10)
        run.stop_server(node)
    first_error = " ".join(next((r["first_error"] for r in reports if r.get("first_error")), "").split())
    grown = rss_after - rss_before
    note = (f"{open_count:,} of {target_count:,} opened in {opened_s:.1f} s by {len(holders)} processes "
            f"({retried} opens tried again, {failed} failed in the end; first error: {first_error or 'none'}); node gauge "
            f"nacos_actors_grpc_connections {gauge:,.0f}, closed by the node {closed or 0}, refused {refused}; "
            f"{alive:,} streams still up after 5 s; fd limit {limit}")
    return [
        Row("grpc_idle_connections", GRPC_IDLE_FIGURES[0][1], open_count, "connections", note=note,
            data={"reports": reports, "gauge": gauge, "alive": alive, "closed": closed, "refused": refused}),
        Row("grpc_idle_rss_per_connection", GRPC_IDLE_FIGURES[1][1], grown / max(open_count, 1), "bytes",
            note=f"node RSS {rss_before / 2**20:,.1f} MiB before, {rss_after / 2**20:,.1f} MiB with them "
                 f"(+{grown / 2**20:,.1f} MiB)",
            data={"rss_before": rss_before, "rss_after": rss_after}),
    ]

