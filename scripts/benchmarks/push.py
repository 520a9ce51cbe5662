"""The push rows: register -> UDP datagram at a Java-client-like subscriber, under a paced
register load."""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import json
import socket
import statistics
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Self

from .results import Row, percentile
from .servers import CONTEXT, HOST, Server, cpu_seconds, full_collections, node_metrics

if TYPE_CHECKING:
    from .run import Run


PUSH_FIGURES = (
    ("push_p50", "push latency p50: register -> UDP datagram at a subscriber"),
    ("push_p99", "push latency p99"),
    ("push_max", "push latency max"),
)
PUSH_SERVICE = "bench-push-probe"
PUSH_AGENT = "Nacos-Java-Client:v1.4.8"  # an agent the node pushes to
PUSH_PROBE_PORT = 20_000  # probe i is 127.0.0.1:PUSH_PROBE_PORT+i
PUSH_LOAD_PREFIX = "bench-bg-"
PUSH_LOAD_SERVICES = 1000
PUSH_LEAD_S = 2  # the background load runs this long before the first probe and after the last
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python does not name it


class PushSubscriber:
    """A subscriber of one service as Nacos 1.x's Java client is one: it polls the list with its
    UDP port (which subscribes it, and keeps it subscribed), acks every push, and records for
    each host port when the first push listing it arrived: the kernel's receive stamp
    (SO_TIMESTAMPNS, wall-clock ns), so this harness's own scheduling does not count. A host
    listed again after a push left it out counts as `reappeared`: probes never come back, so
    that push carried an older state than the one before it."""

    def __init__(self, node: Server, service: str) -> None:
        self.node = node
        self.service = service
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.kernel_stamps = True
        except OSError:
            self.kernel_stamps = False  # then the stamp is taken when recvmsg returns
        self.port = self.sock.getsockname()[1]
        self.first_seen: dict[int, int] = {}  # host port -> arrival (wall-clock ns)
        self.listed: set[int] = set()  # host ports in the newest push
        self.gone: set[int] = set()  # host ports listed once, then left out
        self.last_ref = -1
        self.counts = {"datagrams": 0, "gzip": 0, "stale": 0, "malformed": 0, "reappeared": 0, "largest_bytes": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive_loop, name="push-subscriber", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def poll(self) -> set[int]:
        """GET instance/list with udpPort (subscribes, or refreshes the subscription); the listed ports."""
        query = urllib.parse.urlencode({"serviceName": self.service, "udpPort": self.port, "clusters": ""})
        request = urllib.request.Request(f"{self.node.url}{CONTEXT}/v1/ns/instance/list?{query}",
                                         headers={"User-Agent": PUSH_AGENT})
        with urllib.request.urlopen(request, timeout=5) as response:
            return {host["port"] for host in json.loads(response.read())["hosts"]}

    def _receive_loop(self) -> None:
        """The receiver thread: every datagram, stamped with its arrival, goes to _take."""
        space = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                payload, ancillary, _, source = self.sock.recvmsg(65536, space)
            except TimeoutError:
                continue
            except OSError:
                return
            arrived = time.time_ns()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    seconds, nanos = struct.unpack("qq", data[:16])
                    arrived = seconds * 1_000_000_000 + nanos
            self._take(payload, arrived, source)

    def _take(self, payload: bytes, arrived: int, source: tuple[str, int]) -> None:
        """Ack one datagram and note the hosts that first appear in it (older packets are skipped)."""
        counts = self.counts
        counts["datagrams"] += 1
        counts["largest_bytes"] = max(counts["largest_bytes"], len(payload))
        try:
            if payload[:2] == b"\x1f\x8b":
                payload = gzip.decompress(payload)
                counts["gzip"] += 1
            packet = json.loads(payload)
            ref = int(packet["lastRefTime"])
            listed = {host["port"] for host in json.loads(packet["data"])["hosts"]}
        except (ValueError, KeyError, TypeError):
            counts["malformed"] += 1
            return
        try:
            self.sock.sendto(json.dumps({"type": "push-ack", "lastRefTime": ref, "data": ""}).encode(), source)
        except OSError:
            pass  # the node resends, and counts the push failed after its last send
        if ref <= self.last_ref:  # a resend, or overtaken by a newer packet
            counts["stale"] += 1
            return
        self.last_ref = ref
        for port in listed - self.listed:
            self.first_seen.setdefault(port, arrived)
        counts["reappeared"] += len(listed & self.gone)
        self.gone = (self.gone | (self.listed - listed)) - listed
        self.listed = listed


def instance_call(conn: http.client.HTTPConnection, method: str, service: str, port: int) -> None:
    """POST (register) or DELETE (deregister) the ephemeral instance 127.0.0.1:port of a service."""
    conn.request(method, f"{CONTEXT}/v1/ns/instance?serviceName={service}&ip={HOST}&port={port}&ephemeral=true")
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} instance {service} {port} answered {response.status}: {body[:200]!r}")


def probe_pushes(node: Server, subscriber: PushSubscriber, count: int, rate: int) -> dict[int, tuple[int, int]]:
    """Register `count` probe instances into the subscriber's service, `rate` a second on a fixed
    schedule, each deregistered right after the next is registered (the service holds one or
    two instances: small packets). After a stall the schedule slips instead of catching up, so
    every probe stays listed about 1/rate s: a burst would leave probes listed for less than the
    push window, and coalescing would rightly never push them. Re-polls the list every 5 s to
    stay subscribed. Returns, per
    probe port, the wall-clock ns just before its register request was sent and when its answer
    (`ok`, sent once the registry applied it) was read."""
    conn = http.client.HTTPConnection(HOST, node.port, timeout=5)
    sent: dict[int, tuple[int, int]] = {}
    next_at = last_poll = time.monotonic()
    try:
        for i in range(count):
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at, time.monotonic()) + 1 / rate
            port = PUSH_PROBE_PORT + i
            before = time.time_ns()
            instance_call(conn, "POST", subscriber.service, port)
            sent[port] = (before, time.time_ns())
            if i:
                instance_call(conn, "DELETE", subscriber.service, port - 1)
            if time.monotonic() - last_poll >= 5:
                subscriber.poll()
                last_poll = time.monotonic()
    finally:
        conn.close()
    return sent


def bench_push(run: Run) -> list[Row]:
    """register -> UDP push at a subscriber (p50/p99/max) while a paced register load keeps the node busy."""
    s = run.s
    node = run.start_node("node-push", health_checks=False)
    try:
        with PushSubscriber(node, PUSH_SERVICE) as subscriber, concurrent.futures.ThreadPoolExecutor(1) as pool:
            subscriber.poll()
            load = pool.submit(
                run.wrk, node.url, "register",
                {"path": f"{CONTEXT}/v1/ns/instance", "prefix": PUSH_LOAD_PREFIX, "services": PUSH_LOAD_SERVICES,
                 "base": 0},
                duration=s.push_seconds + 2 * PUSH_LEAD_S, rate=s.push_load, name="wrk-push-load",
            )
            time.sleep(PUSH_LEAD_S)
            gc_before = full_collections(node)
            cpu_before, started = cpu_seconds(node.pid), time.monotonic()
            sent = probe_pushes(node, subscriber, s.push_seconds * s.push_rate, s.push_rate)
            cpu = (cpu_seconds(node.pid) - cpu_before) / (time.monotonic() - started)
            gc_during = full_collections(node) - gc_before
            background = load.result()
        figures = node_metrics(node)
    finally:
        run.stop_server(node)
    per_probe = [
        ((subscriber.first_seen[port] - at) / 1e6 if port in subscriber.first_seen else None, (answered - at) / 1e6)
        for port, (at, answered) in sent.items()
    ]
    if all(push is None for push, _ in per_probe):
        raise RuntimeError(f"no push listed any of {len(sent)} probes ({subscriber.counts})")
    return push_rows(run, per_probe, subscriber, background, figures, cpu, gc_during)


def push_rows(
    run: Run, per_probe: list[tuple[float | None, float]], subscriber: PushSubscriber,
    background: dict[str, Any], figures: dict[str, float], cpu: float, gc_during: int,
) -> list[Row]:
    """The push latency rows, their notes saying the load, what was missed and the node's own view.
    `per_probe`: (register -> push ms, None when no push listed it; register -> answer ms)."""
    s = run.s
    latencies = [push for push, _ in per_probe if push is not None]
    answers = [answer for _, answer in per_probe]
    probes = len(per_probe)
    missed = probes - len(latencies)
    pushes = {o: int(figures.get(f'nacos_actors_pushes_total{{outcome="{o}"}}', 0))
              for o in ("acked", "failed", "superseded")}
    resends = int(figures.get('nacos_actors_push_sends_total{kind="retry"}', 0))
    delay_n = figures.get("nacos_actors_push_delay_seconds_count", 0)
    delay_ms = figures.get("nacos_actors_push_delay_seconds_sum", 0) / delay_n * 1000 if delay_n else 0.0
    load_lat = background["latency_us"]
    data = {"samples": len(latencies), "probes": probes, "missed": missed, "subscriber": subscriber.counts,
            "kernel_stamps": subscriber.kernel_stamps, "mean_ms": statistics.fmean(latencies),
            "node_pushes": pushes, "node_resends": resends, "node_delay_mean_ms": delay_ms, "node_cpu": cpu,
            "node_full_gc_during_probes": gc_during,
            "background": background,
            "per_probe_push_and_answer_ms": [[None if x is None else round(x, 3), round(y, 3)] for x, y in per_probe]}
    load_note = (f"{len(latencies)} probes at {s.push_rate}/s over {s.push_seconds} s; background: paced register "
                 f"{s.push_load:,} req/s into {PUSH_LOAD_SERVICES} other services, achieved {background['rps']:,.0f} "
                 f"(p99 {load_lat['p99'] / 1000:.1f} ms); node CPU {cpu:.0%} of a core; health checks off")
    if background["error_count"]:
        load_note += f"; background ERRORS {background['errors']}"
    rows = [
        Row("push_p50", PUSH_FIGURES[0][1], percentile(latencies, 50), "ms", note=load_note, data=data),
        Row("push_p99", PUSH_FIGURES[1][1], percentile(latencies, 99), "ms",
            note=f"target <= 10 ms; {missed} probes never seen in a push; the probes' register answers: "
                 f"p50 {percentile(answers, 50):.2f} ms, p99 {percentile(answers, 99):.2f} ms, "
                 f"max {max(answers):.1f} ms; {gc_during} full (gen-2) GC collections in the node meanwhile" +
                 ("" if subscriber.kernel_stamps else "; arrival stamped in Python (no SO_TIMESTAMPNS)")),
        Row("push_max", PUSH_FIGURES[2][1], max(latencies), "ms",
            note=f"node: {pushes['acked']:,} pushes acked, {pushes['failed']} failed, {pushes['superseded']} superseded, "
                 f"{resends} resends, applied->sent "
                 f"mean {delay_ms:.2f} ms (deregistrations' pushes wait out the 5 ms window); "
                 f"{subscriber.counts['datagrams']:,} datagrams, "
                 f"{subscriber.counts['gzip']} gzip, largest {subscriber.counts['largest_bytes']:,} B, "
                 f"{subscriber.counts['reappeared']} older states pushed after newer ones (a probe listed again)"),
    ]
    return rows
