"""The peer-lag rows: a 3-node loopback cluster; register on one node, listed on another."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Self

from .results import Row, percentile
from .servers import CONTEXT, HOST, Server, cpu_seconds, http_get

if TYPE_CHECKING:
    from .run import Run


PEER_LAG_FIGURES = (
    ("peer_lag_p50", "peer lag p50: register on one node -> listed on another (3-node cluster)"),
    ("peer_lag_p99", "peer lag p99"),
    ("peer_lag_max", "peer lag max"),
    ("peer_lag_seen", "peer lag: probes seen on the other node"),
    ("peer_lag_load", "peer lag: background register rate achieved"),
)
PEER_NODES = 3
PEER_TARGET_MS = 300
# probe i: 127.0.0.1:PEER_PROBE_PORT+i alone in service <prefix><i>-<8 random hex digits>; the random part
# (seeded: the same names every run) keeps the node responsible for a probe's service from following
# the round robin of the nodes it is registered on, as sequential names would (name hash mod 3)
PEER_PROBE_PREFIX = "bench-peer-probe-"
PEER_PROBE_SEED = 20_250_848
PEER_PROBE_PORT = 20_000
PEER_LOAD_PREFIX = "bench-peer-bg-"  # node i's background load registers into <prefix><i>-00000...
PEER_LOAD_SERVICES = 300  # per node
PEER_LEAD_S = 2  # the background load runs this long before the first probe and after the last
PEER_TIMEOUT_S = 5.0  # a probe not listed on its other node this long after its register's answer: not seen
PEER_POLL_PAUSE_S = 0.001  # between two rounds of a watcher's polls
PEER_FORM_S = 60.0  # longest wait for every node and every member to be UP
PEER_NO_CLUSTER_S = 5.0  # stop waiting sooner when every node is UP and /v1/core/cluster/nodes stays 404


@dataclass
class ClusterForming:
    """How the cluster came up: every node's metrics status and every node's view of the members."""

    ready_s: float | None = None  # seconds from the start to every node UP with all members UP
    problem: str = ""  # why it never was, when it never was
    status: dict[str, str] = field(default_factory=dict)  # node -> metrics status (UP, STARTING, HTTP 503...)
    members: dict[str, Any] = field(default_factory=dict)  # node -> {address: state}, or the HTTP status


def node_answer(node: Server, path: str, pick: Callable[[Any], Any]) -> Any:
    """`pick` of the JSON the node answers at `path`, or a short text saying what answered instead."""
    try:
        status, body = http_get(f"{node.url}{CONTEXT}{path}", 1.0)
    except OSError as error:
        return f"no answer ({type(error).__name__})"
    if status != 200:
        return f"HTTP {status}"
    try:
        return pick(json.loads(body))
    except (ValueError, KeyError, TypeError):
        return "malformed"


def node_status(node: Server) -> str:
    """The node's `status` in GET /v1/ns/operator/metrics (UP once ready), or what answered instead."""
    return node_answer(node, "/v1/ns/operator/metrics", lambda doc: str(doc["status"]))


def member_states(node: Server) -> dict[str, str] | str:
    """{address: state} from the node's GET /v1/core/cluster/nodes, or what answered instead."""
    return node_answer(
        node, "/v1/core/cluster/nodes", lambda doc: {str(m["address"]): str(m["state"]) for m in doc["data"]}
    )


def wait_cluster(run: Run, nodes: list[Server], started: float) -> ClusterForming:
    """Wait until every node answers status UP and lists every member UP; a node that exits is an
    error. When that does not happen within PEER_FORM_S (or every node is UP but has no
    /v1/core/cluster/nodes: a build without the cluster), the answer says why, and the bench
    goes on: its probes then say what a client would see."""
    forming = ClusterForming()
    addresses = {f"{HOST}:{node.port}" for node in nodes}
    no_cluster_since: float | None = None
    while True:
        for node in nodes:
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited with code {node.proc.returncode} while the cluster formed "
                                   f"(log {run.procs.log_dir}/{node.name}.log; --keep-logs keeps it)")
            forming.status[node.name] = node_status(node)
            forming.members[node.name] = member_states(node)
        now = time.monotonic()
        all_up = all(status == "UP" for status in forming.status.values())
        views = list(forming.members.values())
        if all_up and all(isinstance(v, dict) and all(v.get(a) == "UP" for a in addresses) for v in views):
            forming.ready_s = now - started
            return forming
        if all_up and all(v == "HTTP 404" for v in views):
            no_cluster_since = no_cluster_since or now
            if now - no_cluster_since >= PEER_NO_CLUSTER_S:
                forming.problem = (f"every node UP but GET /v1/core/cluster/nodes answers 404 on each "
                                   f"(no cluster in this build); gave up after {now - started:.0f} s")
                return forming
        else:
            no_cluster_since = None
        if now - started >= PEER_FORM_S:
            forming.problem = f"not every node and member UP within {PEER_FORM_S:.0f} s: status {forming.status}, " \
                              f"members {forming.members}"
            return forming
        time.sleep(0.2)


@dataclass
class PeerProbe:
    """One probe: a new instance registered on node `writer`, then polled for on node `reader`.
    Times are time.monotonic_ns()."""

    index: int
    service: str
    port: int
    writer: int
    reader: int
    start_ns: int = 0  # just before the register request was sent
    answer_ns: int = 0  # its answer read
    status: int | str = 0  # the register's HTTP status, or the error's name
    seen_ns: int | None = None  # the first list answer showing it read
    last_miss_ns: int | None = None  # the last list request not showing it sent
    polls: int = 0


class PeerWatcher:
    """Polls GET instance/list on one node, over one keep-alive connection, for every probe handed
    to it (its inbox), each until it is listed or PEER_TIMEOUT_S after its register's answer;
    a round over the pending probes, ~1 ms pause, the next round."""

    def __init__(self, node: Server) -> None:
        self.node = node
        self.inbox: queue.SimpleQueue[PeerProbe] = queue.SimpleQueue()
        self.answers: dict[str, int] = {}  # the list answers not showing their probe, by kind
        self.polls = 0
        self.poll_ns = 0  # summed round trips of the polls
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"peer-watch-{node.port}", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Returns once every probe handed over is seen or timed out."""
        self._closing.set()
        self._thread.join(PEER_TIMEOUT_S + 10)

    def _loop(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.node.port, timeout=5)
        pending: list[PeerProbe] = []
        timeout_ns = int(PEER_TIMEOUT_S * 1e9)
        try:
            while True:
                while True:
                    try:
                        pending.append(self.inbox.get_nowait())
                    except queue.Empty:
                        break
                if not pending:
                    if self._closing.is_set():
                        return
                    try:
                        pending.append(self.inbox.get(timeout=0.05))
                    except queue.Empty:
                        continue
                for probe in list(pending):
                    sent = time.monotonic_ns()
                    listed = self._listed(conn, probe)
                    read = time.monotonic_ns()
                    probe.polls += 1
                    self.polls += 1
                    self.poll_ns += read - sent
                    if listed:
                        probe.seen_ns = read
                        pending.remove(probe)
                    else:
                        probe.last_miss_ns = sent
                        if read - probe.answer_ns > timeout_ns:
                            pending.remove(probe)
                time.sleep(PEER_POLL_PAUSE_S)
        finally:
            conn.close()

    def _listed(self, conn: http.client.HTTPConnection, probe: PeerProbe) -> bool:
        try:
            conn.request("GET", f"{CONTEXT}/v1/ns/instance/list?serviceName={probe.service}")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            conn.close()  # the next request reconnects
            self._count(type(error).__name__)
            time.sleep(0.01)
            return False
        if response.status != 200:
            self._count(f"HTTP {response.status}")
            return False
        try:
            hosts = json.loads(body)["hosts"]
        except (ValueError, KeyError, TypeError):
            self._count("malformed")
            return False
        if any(host.get("port") == probe.port and host.get("ip") == HOST for host in hosts):
            return True
        self._count("not listed")
        return False

    def _count(self, kind: str) -> None:
        self.answers[kind] = self.answers.get(kind, 0) + 1


def peer_reader(i: int, writer: int, same_node: bool) -> int:
    """The node probe i is polled on: not its writer, the other two in turn (every ordered pair
    of nodes equally often); the writer itself only for --peer-lag-same-node."""
    if same_node:
        return writer
    return (writer + 1 + (i // PEER_NODES) % (PEER_NODES - 1)) % PEER_NODES


def probe_peer_lag(nodes: list[Server], watchers: list[PeerWatcher], count: int, rate: int,
                   same_node: bool) -> list[PeerProbe]:
    """Register `count` probes, `rate` a second on a fixed schedule (after a stall it slips
    instead of bursting), round robin over the nodes, each over that node's keep-alive
    connection; each answered 200 goes to the watcher of its reader."""
    conns = [http.client.HTTPConnection(HOST, node.port, timeout=5) for node in nodes]
    probes = []
    names = random.Random(PEER_PROBE_SEED)
    next_at = time.monotonic()
    try:
        for i in range(count):
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at, time.monotonic()) + 1 / rate
            writer = i % len(nodes)
            probe = PeerProbe(i, f"{PEER_PROBE_PREFIX}{i:05d}-{names.getrandbits(32):08x}", PEER_PROBE_PORT + i % 40_000,
                              writer, peer_reader(i, writer, same_node))
            conn = conns[writer]
            probe.start_ns = time.monotonic_ns()
            try:
                conn.request("POST", f"{CONTEXT}/v1/ns/instance?serviceName={probe.service}&ip={HOST}"
                                     f"&port={probe.port}&ephemeral=true")
                response = conn.getresponse()
                response.read()
                probe.status = response.status
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                probe.status = type(error).__name__
            probe.answer_ns = time.monotonic_ns()
            probes.append(probe)
            if probe.status == 200:
                watchers[probe.reader].inbox.put(probe)
    finally:
        for conn in conns:
            conn.close()
    return probes


def bench_peer_lag(run: Run) -> list[Row]:
    """register on one node of a 3-node cluster -> listed on another (p50/p99/max) under a paced register load."""
    s = run.s
    started = time.monotonic()
    nodes = run.start_cluster("node-peer", PEER_NODES, health_checks=False)
    try:
        forming = wait_cluster(run, nodes, started)
        print(f"bench:   cluster formed in {forming.ready_s:.1f} s" if forming.ready_s is not None
              else f"bench:   cluster NOT formed: {forming.problem}", flush=True)
        per_node = s.peer_lag_load / PEER_NODES
        connections = max(s.threads, s.connections // PEER_NODES)
        probe_s = -(-s.peer_lag_probes // s.peer_lag_rate)
        with concurrent.futures.ThreadPoolExecutor(PEER_NODES) as pool:
            loads = [
                pool.submit(
                    run.wrk, node.url, "register",
                    {"path": f"{CONTEXT}/v1/ns/instance", "prefix": f"{PEER_LOAD_PREFIX}{i}-",
                     "services": PEER_LOAD_SERVICES, "base": 0},
                    duration=probe_s + 2 * PEER_LEAD_S, connections=connections, rate=per_node,
                    name=f"wrk-peer-load-{i}",
                )
                for i, node in enumerate(nodes) if s.peer_lag_load
            ]
            if loads:
                time.sleep(PEER_LEAD_S)
            cpu_before, t0 = [cpu_seconds(node.pid) for node in nodes], time.monotonic()
            watchers = [PeerWatcher(node) for node in nodes]
            with contextlib.ExitStack() as stack:
                for watcher in watchers:
                    stack.enter_context(watcher)
                probes = probe_peer_lag(nodes, watchers, s.peer_lag_probes, s.peer_lag_rate, s.peer_lag_same_node)
            probing_s = time.monotonic() - t0  # until the last probe was seen or timed out
            cpu = [(cpu_seconds(node.pid) - before) / probing_s for node, before in zip(nodes, cpu_before)]
            background = [dict(load.result(), connections=connections) for load in loads]
        counts, settled_s = settle_counts(run, nodes)
    finally:
        with concurrent.futures.ThreadPoolExecutor(PEER_NODES) as pool:
            stops = list(pool.map(run.stop_server, nodes))
    return peer_lag_rows(run, forming, probes, watchers, background, cpu, probing_s, counts, settled_s, stops)


def settle_counts(run: Run, nodes: list[Server], timeout: float = 3.0) -> tuple[list[int | None], float | None]:
    """Every node's instance count once all agree (replication caught up with the last writes),
    and how long after the loads that took; the last counts and None if they never agreed."""
    started = time.monotonic()
    while True:
        counts: list[int | None] = []
        for node in nodes:
            try:
                counts.append(run.node_counts(node)[1])
            except (OSError, RuntimeError, ValueError, KeyError):
                counts.append(None)
        waited = time.monotonic() - started
        if None not in counts and len(set(counts)) == 1:
            return counts, waited
        if waited >= timeout:
            return counts, None
        time.sleep(0.05)


def peer_lag_rows(
    run: Run, forming: ClusterForming, probes: list[PeerProbe], watchers: list[PeerWatcher],
    background: list[dict[str, Any]], cpu: list[float], probing_s: float, counts: list[int | None],
    settled_s: float | None, stops: list[dict[str, Any]],
) -> list[Row]:
    """The peer lag rows: latencies from the register's answer to the first list answer on the
    other node showing the probe; notes say the set-up, the cluster, the load and what was missed."""
    s = run.s
    ms = 1e-6
    answered = [p for p in probes if p.status == 200]
    seen = [p for p in answered if p.seen_ns is not None]
    lags = [(p.seen_ns - p.answer_ns) * ms for p in seen if p.seen_ns is not None]
    from_start = [(p.seen_ns - p.start_ns) * ms for p in seen if p.seen_ns is not None]
    register_ms = [(p.answer_ns - p.start_ns) * ms for p in answered]
    # the first showing list answer may have been sent after it was already visible: this much at most
    resolution = [(p.seen_ns - max(p.last_miss_ns or p.answer_ns, p.answer_ns)) * ms
                  for p in seen if p.seen_ns is not None]
    failed: dict[str, int] = {}
    for p in probes:
        if p.status != 200:
            failed[str(p.status)] = failed.get(str(p.status), 0) + 1
    answers: dict[str, int] = {}
    for watcher in watchers:
        for kind, n in watcher.answers.items():
            answers[kind] = answers.get(kind, 0) + n
    polls = sum(w.polls for w in watchers)
    poll_ms = sum(w.poll_ns for w in watchers) / polls * ms if polls else 0.0
    pairs: dict[str, list[float]] = {}
    for p in seen:
        if p.seen_ns is not None:
            pairs.setdefault(f"{p.writer}->{p.reader}", []).append((p.seen_ns - p.answer_ns) * ms)
    ports = "/".join(str(node_port) for node_port in (w.node.port for w in watchers))

    if forming.ready_s is not None:
        cluster = f"cluster of 3 formed in {forming.ready_s:.1f} s (every node UP, every member UP on each)"
    else:
        cluster = f"cluster NOT formed: {forming.problem}"
    where = ("SANITY CHECK (--peer-lag-same-node): polled on the node it registered on, not a peer"
             if s.peer_lag_same_node else "polled for on one of the other two (every ordered pair alike)")
    setup = (f"{len(probes)} probes at {s.peer_lag_rate}/s, each a new instance alone in its own (randomly named) "
             f"service, registered "
             f"on the nodes in turn and {where}, over a keep-alive connection every ~1 ms until listed (at most "
             f"{PEER_TIMEOUT_S:.0f} s); lag = register answer -> the first list answer showing it; nodes on ports "
             f"{ports}{', all three on CPU 1' if run.pin == 'on' else ''}, health checks off; {cluster}")
    data = {
        "probes": len(probes), "answered": len(answered), "seen": len(seen), "failed_registers": failed,
        "cluster": asdict(forming), "same_node": s.peer_lag_same_node, "timeout_s": PEER_TIMEOUT_S,
        "other_node_answers_before_seen": answers, "polls": polls, "poll_round_trip_mean_ms": poll_ms,
        "node_cpu": cpu, "probing_s": probing_s, "instances_at_end": counts, "counts_agreed_after_s": settled_s,
        "node_stops": stops,
        "by_pair_ms": {k: {"n": len(v), "p50": percentile(v, 50), "max": max(v)} for k, v in sorted(pairs.items())},
        "background": background,
        # [writer, reader, register status, register start -> answer, answer -> seen, start -> seen] (ms)
        "per_probe": [[p.writer, p.reader, p.status, round((p.answer_ns - p.start_ns) * ms, 3),
                       None if p.seen_ns is None else round((p.seen_ns - p.answer_ns) * ms, 3),
                       None if p.seen_ns is None else round((p.seen_ns - p.start_ns) * ms, 3)] for p in probes],
    }
    unseen = len(answered) - len(seen)
    if lags:
        rows = [
            Row("peer_lag_p50", PEER_LAG_FIGURES[0][1], percentile(lags, 50), "ms", note=setup, data=data),
            Row("peer_lag_p99", PEER_LAG_FIGURES[1][1], percentile(lags, 99), "ms",
                note=f"target <= {PEER_TARGET_MS} ms; from the register's start: p50 {percentile(from_start, 50):.2f} ms, "
                     f"p99 {percentile(from_start, 99):.2f} ms; the probes' register answers: "
                     f"p50 {percentile(register_ms, 50):.2f} ms, p99 {percentile(register_ms, 99):.2f} ms, "
                     f"max {max(register_ms):.1f} ms; poll resolution (last miss sent -> showing answer read) "
                     f"mean {statistics.fmean(resolution):.2f} ms, max {max(resolution):.1f} ms; "
                     f"a list round trip {poll_ms:.2f} ms on average"),
            Row("peer_lag_max", PEER_LAG_FIGURES[2][1], max(lags), "ms",
                note="by writer->reader node: " + ", ".join(
                    f"{k} p50 {percentile(v, 50):.1f} / max {max(v):.1f}" for k, v in sorted(pairs.items()))),
        ]
    else:
        none = f"none seen: 0 of {len(answered)} registered probes listed within {PEER_TIMEOUT_S:.0f} s"
        if forming.ready_s is None:
            none += " (cluster not formed)"
        rows = [Row(key, figure, none, data=data if key == "peer_lag_p50" else {})
                for key, figure in PEER_LAG_FIGURES[:3]]
        rows[0].note = setup
    seen_note = (f"of {len(probes)}: {unseen} registered but not listed on the other node within "
                 f"{PEER_TIMEOUT_S:.0f} s, {len(probes) - len(answered)} registers not answered 200"
                 + (f" ({failed})" if failed else "")
                 + f"; the other node's list answers before a probe showed: {answers or 'none'}"
                 + ("" if lags else f"; {setup}"))
    rows.append(Row("peer_lag_seen", PEER_LAG_FIGURES[3][1], len(seen), "probes", note=seen_note))
    stop_note = "SIGTERM to exit: " + ", ".join(
        f"{st['stop_s']:.1f} s exit {st['exit_code']}" for st in stops)
    registered = len(answered) + sum(b["requests"] - b["errors"]["status"] for b in background)
    if background:
        rps = sum(b["rps"] for b in background)
        load_note = (f"target {s.peer_lag_load:,}/s, wrk paced, a third to each node ({len(background)} x "
                     f"{background[0]['connections']} connections), each into "
                     f"{PEER_LOAD_SERVICES} services of its own; per node "
                     + "/".join(f"{b['rps']:,.0f}" for b in background)
                     + f"; behind schedule max {max(b['lag_max_us'] for b in background) / 1000:,.0f} ms, "
                     f"{sum(b['late'] for b in background):,} requests > 10 ms; answers p50 "
                     + "/".join(f"{b['latency_us']['p50'] / 1000:.1f}" for b in background)
                     + " ms, p99 " + "/".join(f"{b['latency_us']['p99'] / 1000:.1f}" for b in background) + " ms")
        errors = [b["errors"] for b in background if b["error_count"]]
        if errors:
            load_note += f"; ERRORS {errors}"
        load_row = Row("peer_lag_load", PEER_LAG_FIGURES[4][1], rps, "req/s", note=load_note)
    else:
        load_row = Row("peer_lag_load", PEER_LAG_FIGURES[4][1], "none (--peer-lag-load 0)")
    load_row.note += ("; " if load_row.note else "") + (
        "node CPU over the probes " + "/".join(f"{c:.0%}" for c in cpu) + " of a core; instances per node at the "
        "end " + "/".join("?" if c is None else f"{c:,}" for c in counts) + f" (~{registered:,} registers answered; "
        + (f"equal {settled_s * 1000:,.0f} ms after the load)" if settled_s is not None
           else "NOT equal 3 s after the load: each should hold all once replicated)") + "; " + stop_note)
    rows.append(load_row)
    return rows
