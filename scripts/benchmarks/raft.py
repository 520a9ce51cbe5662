"""The Raft rows (issue 15): persistent registers (`ephemeral=false`, through Raft) on one node
and on a 3-node cluster, each a ratio to the ceiling with the commit latency from the node's
`nacos_actors_raft_proposal_duration_seconds` histogram; how long after the leader is killed a
persistent write succeeds again; and how long a node takes to restart on a journal of
--raft-instances persistent instances.

Every node here keeps its journal in a data directory of its own under the run's log directory
(a real file system, so an fsync costs what it costs; the row says which file system), gets a
Raft port of its own, and runs without health checks (persistent instances never expire
anyway; the rows leave them silent).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import math
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster import wait_cluster
from .results import Row
from .servers import CONTEXT, HOST, Server, http_get, node_metrics, rss_bytes

if TYPE_CHECKING:
    from .run import Run


RAFT_REGISTER_FIGURES = (
    ("raft_register_fsync", "persistent register, 1 node, fsync on"),
    ("raft_commit_fsync", "persistent register, 1 node, fsync on: commit p99"),
    ("raft_register_nofsync", "persistent register, 1 node, fsync off (NOT safe)"),
    ("raft_commit_nofsync", "persistent register, 1 node, fsync off: commit p99"),
)
RAFT_CLUSTER_FIGURES = (
    ("raft_cluster_register_fsync", "persistent register, 3 nodes, fsync on"),
    ("raft_cluster_commit_fsync", "persistent register, 3 nodes, fsync on: commit p99"),
    ("raft_cluster_register_nofsync", "persistent register, 3 nodes, fsync off (NOT safe)"),
    ("raft_cluster_commit_nofsync", "persistent register, 3 nodes, fsync off: commit p99"),
)
RAFT_FAILOVER_FIGURES = (
    ("raft_failover_first", "leader SIGKILLed: a persistent write OK again (median)"),
    ("raft_failover_all", "leader SIGKILLed: persistent writes OK on both survivors (median)"),
)
RAFT_RESTART_FIGURES = (
    ("raft_fill", "persistent fill, 1 node, fsync on"),
    ("raft_restart_kill", "restart after SIGKILL: Raft ready, all listed"),
    ("raft_restart_term", "restart after SIGTERM: Raft ready, all listed"),
    ("raft_journal_bytes", "Raft journal after the fill"),
    ("raft_snapshot_bytes", "Raft snapshot after the fill"),
)
PROPOSAL_BUCKET = "nacos_actors_raft_proposal_duration_seconds_bucket"
PROPOSAL_OUTCOME = "nacos_actors_raft_proposals_total"
UNSAFE = "--raft-fsync false: NOT a safe setting (an acknowledged write may be lost when the machine fails); " \
         "for comparison only"
SAFE = "--raft-fsync true (the default): the journal is synced before a write is answered"
CLUSTER_SIZE = 3
REGISTER_PREFIX = "bench-raft-reg-"
FILL_PREFIX = "bench-raft-fill-"
FILL_PER_SERVICE = 100
FILL_CONNECTIONS_FACTOR = 4  # the fill uses this many times --connections: more writes in each synced batch
READY_TIMEOUT_S = 60.0
RESTART_TIMEOUT_S = 600.0  # a restart on the journal of --raft-instances must be over within this
TRICKLE_PREFIX = "bench-raft-trickle-"
TRICKLE_SERVICES = 10
TRICKLE_TIMEOUT_S = 10.0  # one trickle write's HTTP timeout (the node answers 503 after 3 s at most)
TRICKLE_WORKERS = 64  # writes in flight at most: a write stuck for seconds does not hold up the next
STEADY_S = 1.0  # the trickle runs this long on a settled cluster before each kill
RECOVERY_TIMEOUT_S = 20.0  # after a kill, the longest wait for persistent writes to succeed again
POLL_S = 0.02


# -- the node's Raft figures -------------------------------------------------------------------------


def raft_state(node: Server, timeout: float = 1.0) -> dict[str, Any] | None:
    """The `raft` part of the node's GET /v1/ns/raft/state, or None when it does not answer 200."""
    try:
        status, body = http_get(f"{node.url}{CONTEXT}/v1/ns/raft/state", timeout)
    except OSError:
        return None
    if status != 200:
        return None
    return json.loads(body)["raft"]


def proposal_figures(node: Server) -> dict[str, float]:
    """The node's proposal histogram buckets (`le` -> cumulative count) and outcome counters."""
    figures = {}
    for series, value in node_metrics(node).items():
        if series.startswith(PROPOSAL_BUCKET + "{") or series.startswith(PROPOSAL_OUTCOME + "{"):
            figures[series] = value
    return figures


def figures_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {series: value - before.get(series, 0.0) for series, value in after.items()}


def summed(figures: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for one in figures:
        for series, value in one.items():
            total[series] = total.get(series, 0.0) + value
    return total


def histogram_buckets(figures: dict[str, float]) -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of the proposal histogram, in order."""
    buckets = []
    for series, value in figures.items():
        if series.startswith(PROPOSAL_BUCKET + "{"):
            bound = series.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((math.inf if bound == "+Inf" else float(bound), value))
    return sorted(buckets)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, interpolated linearly within its bucket
    as Prometheus's histogram_quantile does (the highest finite bound when it falls past it)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def outcomes(figures: dict[str, float]) -> dict[str, int]:
    """Proposals by outcome (those that happened)."""
    found = {}
    for series, value in figures.items():
        if series.startswith(PROPOSAL_OUTCOME + "{") and value:
            found[series.split('outcome="', 1)[1].split('"', 1)[0]] = int(value)
    return found


def quantiles_text(buckets: list[tuple[float, float]]) -> str:
    """p50, p99 and the bucket the slowest proposal fell in, of a proposal histogram."""
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    if p50 is None or p99 is None:
        return "no proposal recorded"
    total = buckets[-1][1]
    slowest = next(bound for bound, count in buckets if count >= total)
    top = "over the last bucket" if math.isinf(slowest) else f"<= {slowest * 1000:,.0f} ms"
    return f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, slowest {top}"


def commit_row(key: str, figure: str, figures: dict[str, float], note: str) -> Row:
    """The commit latency (propose -> committed and applied on the proposing member) of the
    proposals a load made: p99 as the value, p50 in the note."""
    buckets = histogram_buckets(figures)
    p50, p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
    count = int(buckets[-1][1]) if buckets else 0
    if p50 is None or p99 is None:
        return Row(key, figure, "none: no proposal recorded", note=note)
    text = (f"p50 {p50 * 1000:.2f} ms; {count:,} proposals ({outcomes(figures)}); "
            f"nacos_actors_raft_proposal_duration_seconds, interpolated within its buckets; {note}")
    return Row(key, figure, p99 * 1000, "ms", note=text, data={"p50_ms": p50 * 1000, "buckets": buckets})


# -- data directories --------------------------------------------------------------------------------


def data_dir(run: Run, name: str) -> Path:
    """A fresh data directory under the run's log directory (removed with the logs)."""
    path = run.procs.log_dir / "data" / name
    path.mkdir(parents=True, exist_ok=False)
    return path


def file_system(path: Path) -> str:
    """The type of the file system `path` is on (from /proc/mounts; '?' when unknown)."""
    best, kind = "", "?"
    target = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind


def disk_note(path: Path) -> str:
    kind = file_system(path)
    warning = " (WARNING: in memory, an fsync costs nothing there)" if kind in ("tmpfs", "ramfs") else ""
    return f"data dir on {kind}{warning}"


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# -- readiness of Raft ---------------------------------------------------------------------------------


def wait_leader(nodes: list[Server], timeout: float = READY_TIMEOUT_S) -> int:
    """Wait until every node says Raft is ready and all name the same leader, one of them;
    answers the leader's index in `nodes`."""
    addresses = [f"{HOST}:{node.port}" for node in nodes]
    deadline = time.monotonic() + timeout
    states: list[dict[str, Any] | None] = []
    while time.monotonic() < deadline:
        for node in nodes:
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited with code {node.proc.returncode}")
        states = [raft_state(node) for node in nodes]
        leaders = {state["leader"] for state in states if state is not None and state["ready"]}
        if all(state is not None and state["ready"] for state in states) and len(leaders) == 1:
            leader = leaders.pop()
            if leader in addresses:
                return addresses.index(leader)
        time.sleep(POLL_S)
    raise RuntimeError(f"Raft not ready with one leader on every node within {timeout:.0f} s: {states}")


# -- persistent register loads ----------------------------------------------------------------------


def register_args(prefix: str, services: int) -> dict[str, Any]:
    return {"path": f"{CONTEXT}/v1/ns/instance", "prefix": prefix, "services": services, "base": 0,
            "ephemeral": "false"}


def bench_raft_register(run: Run) -> list[Row]:
    """persistent register (ephemeral=false, through Raft) on one node with a data dir, fsync on and off."""
    rows = []
    for fsync, (load_key, load_figure), (commit_key, commit_figure) in (
        (True, RAFT_REGISTER_FIGURES[0], RAFT_REGISTER_FIGURES[1]),
        (False, RAFT_REGISTER_FIGURES[2], RAFT_REGISTER_FIGURES[3]),
    ):
        directory = data_dir(run, f"raft-register-{'fsync' if fsync else 'nofsync'}")
        node = run.start_node(f"node-raft-{'fsync' if fsync else 'nofsync'}", health_checks=False, data_dir=directory,
                              extra=["--raft-fsync", "true" if fsync else "false"])
        try:
            wait_leader([node])
            _, before_count = run.node_counts(node)
            before = proposal_figures(node)
            result = run.wrk(node.url, "register", register_args(REGISTER_PREFIX, run.s.register_services),
                             name=f"wrk-{load_key}", measured=True)
            figures = figures_delta(proposal_figures(node), before)
            _, after_count = run.node_counts(node)
            state = raft_state(node) or {}
            metrics = node_metrics(node)
        finally:
            stopped = run.stop_server(node)
        added = after_count - before_count
        safety = SAFE if fsync else UNSAFE
        note = (f"POST instance?ephemeral=false, a new instance per request over {run.s.register_services} services; "
                f"{added:,} persistent instances added; {safety}; {disk_note(directory)}; journal "
                f"{metrics.get('nacos_actors_raft_journal_bytes', 0):,.0f} B, "
                f"{metrics.get('nacos_actors_raft_snapshots_total', 0):.0f} snapshots (every "
                f"5,000 entries), commit index {state.get('commitIndex', '?')}; SIGTERM to exit "
                f"{stopped['stop_s']:.1f} s, exit {stopped['exit_code']}")
        if added < result["requests"] - result["error_count"]:
            note += f"; WARNING: only {added} of {result['requests']} registered"
        rows.append(run.throughput_row(load_key, load_figure, result, note))
        rows.append(commit_row(commit_key, commit_figure, figures, "fsync on" if fsync else "fsync off, NOT safe"))
    return rows


def merged_load(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Loads run side by side as one: their requests, errors and rates added up."""
    errors: dict[str, int] = {}
    for result in results:
        for kind, n in result["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "requests": sum(r["requests"] for r in results),
        "rps": sum(r["rps"] for r in results),
        "seconds": max(r["seconds"] for r in results),
        "errors": errors,
        "error_count": sum(errors.values()),
        "bad": sum(r.get("bad", 0) for r in results),
        "per_node": results,
    }


def bench_raft_cluster(run: Run) -> list[Row]:
    """persistent register on a 3-node cluster with data dirs, writes spread over the members, fsync on and off."""
    rows = []
    for fsync, (load_key, load_figure), (commit_key, commit_figure) in (
        (True, RAFT_CLUSTER_FIGURES[0], RAFT_CLUSTER_FIGURES[1]),
        (False, RAFT_CLUSTER_FIGURES[2], RAFT_CLUSTER_FIGURES[3]),
    ):
        label = "fsync" if fsync else "nofsync"
        directories = [data_dir(run, f"raft-cluster-{label}-{i}") for i in range(CLUSTER_SIZE)]
        started = time.monotonic()
        nodes = run.start_cluster(f"node-raft-cluster-{label}", CLUSTER_SIZE, health_checks=False,
                                  data_dirs=directories, extra=["--raft-fsync", "true" if fsync else "false"])
        try:
            forming = wait_cluster(run, nodes, started)
            leader = wait_leader(nodes)
            formed_s = time.monotonic() - started
            before = [proposal_figures(node) for node in nodes]
            counts_before = [run.node_counts(node)[1] for node in nodes]
            connections = max(run.s.threads, run.s.connections // CLUSTER_SIZE)
            run.probe_ceiling()
            with concurrent.futures.ThreadPoolExecutor(CLUSTER_SIZE) as pool:
                loads = [
                    pool.submit(run.wrk, node.url, "register",
                                register_args(f"{REGISTER_PREFIX}{i}-", run.s.register_services),
                                connections=connections, name=f"wrk-{load_key}-{i}")
                    for i, node in enumerate(nodes)
                ]
                results = [load.result() for load in loads]
            run.timeline.append(("load", None))
            figures = summed([figures_delta(proposal_figures(node), b) for node, b in zip(nodes, before, strict=True)])
            counts_after = [run.node_counts(node)[1] for node in nodes]
        finally:
            with concurrent.futures.ThreadPoolExecutor(CLUSTER_SIZE) as pool:
                stops = list(pool.map(run.stop_server, nodes))
        load = merged_load(results)
        added = [after - b for after, b in zip(counts_after, counts_before, strict=True)]
        answered = load["requests"] - load["error_count"]
        per_node = "/".join(f"{r['rps']:,.0f}" for r in results)
        p50s = "/".join(f"{r['latency_us']['p50'] / 1000:.1f}" for r in results)
        p99s = "/".join(f"{r['latency_us']['p99'] / 1000:.1f}" for r in results)
        notes = [f"wrk answers p50 {p50s} ms, p99 {p99s} ms (per node, the leader is node {leader})"]
        if load["error_count"] or load["bad"]:
            notes.append(f"ERRORS {load['errors']} bad {load['bad']}")
        cluster = (f"formed in {formed_s:.1f} s" if forming.ready_s is not None
                   else f"NOT formed as wait_cluster expects ({forming.problem}), Raft ready in {formed_s:.1f} s")
        notes.append(
            f"{CLUSTER_SIZE} x wrk {connections} connections side by side, one per node, each into "
            f"{run.s.register_services} services of its own; per node {per_node} req/s; a follower forwards its "
            f"proposals to the leader; persistent instances added per node {'/'.join(f'{a:,}' for a in added)} "
            f"(~{answered:,} answered; each node should hold them all); cluster {cluster}; "
            f"{SAFE if fsync else UNSAFE}; {disk_note(directories[0])}"
            f"{', all three on CPU 1' if run.pin == 'on' else ''}; SIGTERM to exit: "
            + ", ".join(f"{st['stop_s']:.1f} s exit {st['exit_code']}" for st in stops))
        data = dict(load, timeline_index=len(run.timeline) - 1, counts_added=added)
        rows.append(Row(load_key, load_figure, load["rps"], "req/s", note="; ".join(notes), data=data, throughput=True))
        rows.append(commit_row(commit_key, commit_figure, figures,
                               f"summed over the 3 nodes (each records the proposals it made, forwarded ones "
                               f"included); {'fsync on' if fsync else 'fsync off, NOT safe'}"))
    return rows


# -- recovery after the leader is killed --------------------------------------------------------------


@dataclass
class TrickleWrite:
    """One persistent write of the trickle: times are time.monotonic()."""

    instance: int
    node: int
    sent: float
    answered: float = 0.0
    status: int | str = 0  # the HTTP status, or the error's name


def trickle_instance(instance: int) -> tuple[str, str, int]:
    """Instance k of the trickle: (service, ip, port), distinct for every k."""
    return (f"{TRICKLE_PREFIX}{instance % TRICKLE_SERVICES:05d}", f"127.0.1.{instance // 65535 % 256}",
            instance % 65535 + 1)


class Trickle:
    """Persistent writes at a steady `rate` a second, each a new instance, dealt to the live
    nodes in turn, each on a new connection from a pool of threads (so a write that waits
    seconds for its answer holds up no other)."""

    def __init__(self, nodes: list[Server], rate: float) -> None:
        self.nodes = nodes
        self.live = [True] * len(nodes)
        self.rate = rate
        self.writes: list[TrickleWrite] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(TRICKLE_WORKERS, thread_name_prefix="raft-trickle")
        self._thread = threading.Thread(target=self._schedule, name="raft-trickle-schedule", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; returns once every write sent has its answer (or its timeout)."""
        self._stopping.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True)

    def _schedule(self) -> None:
        next_at = time.monotonic()
        turn = 0
        instance = 0
        while not self._stopping.is_set():
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at + 1 / self.rate, time.monotonic() - 1 / self.rate)
            live = [i for i, up in enumerate(self.live) if up]
            if not live:
                continue
            node = live[turn % len(live)]
            turn += 1
            write = TrickleWrite(instance, node, time.monotonic())
            instance += 1
            with self._lock:
                self.writes.append(write)
            self._pool.submit(self._send, write, self.nodes[node].port)

    @staticmethod
    def _send(write: TrickleWrite, port: int) -> None:
        service, ip, instance_port = trickle_instance(write.instance)
        conn = http.client.HTTPConnection(HOST, port, timeout=TRICKLE_TIMEOUT_S)
        try:
            conn.request("POST", f"{CONTEXT}/v1/ns/instance?serviceName={service}&ip={ip}&port={instance_port}"
                                 f"&ephemeral=false")
            response = conn.getresponse()
            response.read()
            write.status = response.status
        except (OSError, http.client.HTTPException) as error:
            write.status = type(error).__name__
        finally:
            conn.close()
            write.answered = time.monotonic()

    def since(self, moment: float) -> list[TrickleWrite]:
        with self._lock:
            return [w for w in self.writes if w.sent >= moment]

    def first_ok(self, moment: float, node: int | None = None) -> float | None:
        """Seconds from `moment` to the answer of the first write sent after it that succeeded
        (on `node`, or anywhere), or None."""
        answers = [w.answered for w in self.since(moment) if w.status == 200 and (node is None or w.node == node)]
        return min(answers) - moment if answers else None


@dataclass
class Failover:
    """One kill of the leader: times are seconds after the SIGKILL."""

    killed: int
    first_ok_s: float | None = None  # the first write sent after the kill that succeeded, answered
    all_ok_s: float | None = None  # every survivor has answered one such write 200
    new_leader_s: float | None = None  # a survivor first named a leader other than the killed one
    failed: dict[str, int] = field(default_factory=dict)  # writes sent after the kill not answered 200
    slowest_answer_s: float = 0.0  # the longest a write sent after the kill waited for its answer


def kill_leader(run: Run, nodes: list[Server], trickle: Trickle) -> Failover:
    """SIGKILL the leader while the trickle runs; watch until every survivor answers writes
    again (at most RECOVERY_TIMEOUT_S), then start it again on its data dir and wait until
    the three agree on a leader."""
    leader = wait_leader(nodes)
    time.sleep(STEADY_S)
    survivors = [i for i in range(len(nodes)) if i != leader]
    trickle.live[leader] = False
    killed_at = time.monotonic()
    run.procs.stop(nodes[leader].proc, signal.SIGKILL, 5)
    failover = Failover(killed=leader)
    old = f"{HOST}:{nodes[leader].port}"
    while time.monotonic() - killed_at < RECOVERY_TIMEOUT_S:
        if failover.new_leader_s is None:
            for i in survivors:
                state = raft_state(nodes[i], 0.5)
                if state is not None and state["leader"] not in (None, old):
                    failover.new_leader_s = time.monotonic() - killed_at
                    break
        firsts = [trickle.first_ok(killed_at, i) for i in survivors]
        if all(first is not None for first in firsts) and failover.new_leader_s is not None:
            break
        time.sleep(POLL_S)
    firsts = [first for first in (trickle.first_ok(killed_at, i) for i in survivors) if first is not None]
    failover.first_ok_s = trickle.first_ok(killed_at)
    failover.all_ok_s = max(firsts) if len(firsts) == len(survivors) else None
    time.sleep(0.5)  # writes sent just before the end of the watch have their answers
    for write in trickle.since(killed_at):
        if write.answered:
            failover.slowest_answer_s = max(failover.slowest_answer_s, write.answered - write.sent)
            if write.status != 200:
                failover.failed[str(write.status)] = failover.failed.get(str(write.status), 0) + 1
    nodes[leader] = run.restart_node(nodes[leader])
    run.wait_ready(nodes[leader], READY_TIMEOUT_S)
    wait_leader(nodes)
    trickle.live[leader] = True
    return failover


def acknowledged_lost(nodes: list[Server], trickle: Trickle) -> tuple[int, list[int]]:
    """How many trickle writes were answered 200, and per node how many of those it does not list."""
    acknowledged = {(trickle_instance(w.instance)) for w in trickle.writes if w.status == 200}
    lost = []
    for node in nodes:
        listed = set()
        for n in range(TRICKLE_SERVICES):
            service = f"{TRICKLE_PREFIX}{n:05d}"
            status, body = http_get(f"{node.url}{CONTEXT}/v1/ns/instance/list?serviceName={service}", 5.0)
            if status == 200:
                listed |= {(service, host["ip"], host["port"]) for host in json.loads(body)["hosts"]}
        lost.append(len(acknowledged - listed))
    return len(acknowledged), lost


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f} s, max {max(values):.2f} s"


def bench_raft_failover(run: Run) -> list[Row]:
    """3 nodes with data dirs, a trickle of persistent writes; SIGKILL the leader: seconds until writes succeed again."""
    s = run.s
    directories = [data_dir(run, f"raft-failover-{i}") for i in range(CLUSTER_SIZE)]
    started = time.monotonic()
    nodes = run.start_cluster("node-raft-failover", CLUSTER_SIZE, health_checks=False, data_dirs=directories)
    trickle = Trickle(nodes, s.raft_trickle_rate)
    failovers: list[Failover] = []
    try:
        wait_cluster(run, nodes, started)
        wait_leader(nodes)
        trickle.start()
        for i in range(s.raft_kills):
            failover = kill_leader(run, nodes, trickle)
            failovers.append(failover)
            shown = "/".join("-" if v is None else f"{v:.2f}" for v in (
                failover.first_ok_s, failover.all_ok_s, failover.new_leader_s))
            print(f"bench:   kill {i + 1}: node {failover.killed}, OK again / on both / new leader {shown} s; "
                  f"failed {failover.failed}", flush=True)
        trickle.stop()
        acknowledged, lost = acknowledged_lost(nodes, trickle)
    finally:
        trickle.stop()
        with concurrent.futures.ThreadPoolExecutor(CLUSTER_SIZE) as pool:
            stops = list(pool.map(run.stop_server, nodes))
    firsts = [f.first_ok_s for f in failovers if f.first_ok_s is not None]
    alls = [f.all_ok_s for f in failovers if f.all_ok_s is not None]
    leaders = [f.new_leader_s for f in failovers if f.new_leader_s is not None]
    failed: dict[str, int] = {}
    for f in failovers:
        for kind, n in f.failed.items():
            failed[kind] = failed.get(kind, 0) + n
    setup = (f"{len(failovers)} kills; 3 nodes with data dirs (fsync on, election timeout 400 ms), "
             f"{s.raft_trickle_rate}/s persistent writes (each a new instance, a new connection) to the live "
             f"nodes in turn; each time the current leader SIGKILLed, then restarted on its data dir once the "
             f"survivors serve; timed from the SIGKILL to the answer of the first write sent after it that "
             f"succeeded (resolution ~{1000 / s.raft_trickle_rate:.0f} ms)")
    data = {"failovers": [vars(f) for f in failovers], "acknowledged": acknowledged, "lost_per_node": lost,
            "stops": stops}
    missing = len(failovers) - len(firsts)
    tail = (f"writes sent after a kill not answered 200: {failed or 'none'}; slowest answer "
            f"{max((f.slowest_answer_s for f in failovers), default=0):.2f} s; {acknowledged:,} writes acknowledged, "
            f"not listed afterwards per node {'/'.join(map(str, lost))} (goal 0); {disk_note(directories[0])}")
    rows = []
    if firsts:
        note = f"{spread(firsts)}; {setup}"
        if leaders:
            note += f"; a survivor named the new leader after median {statistics.median(leaders):.2f} s ({spread(leaders)})"
        if missing:
            note += f"; WARNING: {missing} kills with no write OK within {RECOVERY_TIMEOUT_S:.0f} s"
        rows.append(Row("raft_failover_first", RAFT_FAILOVER_FIGURES[0][1], statistics.median(firsts), "s",
                        note=note, data=data))
    else:
        rows.append(Row("raft_failover_first", RAFT_FAILOVER_FIGURES[0][1],
                        f"never: no write OK within {RECOVERY_TIMEOUT_S:.0f} s of a kill", note=setup, data=data))
    if alls:
        rows.append(Row("raft_failover_all", RAFT_FAILOVER_FIGURES[1][1], statistics.median(alls), "s",
                        note=f"{spread(alls)}; target 2 s (a new leader serves); {tail}"))
    else:
        rows.append(Row("raft_failover_all", RAFT_FAILOVER_FIGURES[1][1], "never on both survivors", note=tail))
    return rows


# -- restart on a large journal ---------------------------------------------------------------------------


@dataclass
class Restart:
    """A restart on the same data dir: seconds from the process's start."""

    http_s: float | None = None  # the first answer of GET raft/state
    ready_s: float | None = None  # raft/state says ready and the node counts every instance
    listed_s: float | None = None  # every fill service listed, with all its instances
    listed: int = 0
    rss: int = 0
    state: dict[str, Any] = field(default_factory=dict)


def timed_restart(run: Run, node: Server, count: int, services: int) -> tuple[Server, Restart]:
    """Start the node again on its data dir; time its first answer, Raft ready with all
    `count` instances counted, and all of them listed (GET instance/list of every service)."""
    started = time.monotonic()
    node = run.restart_node(node)
    restart = Restart()
    while True:
        if node.proc.poll() is not None:
            raise RuntimeError(f"{node.name} exited with code {node.proc.returncode} while restarting "
                               f"(log {run.procs.log_dir}/{node.name}.log; --keep-logs keeps it)")
        elapsed = time.monotonic() - started
        if elapsed > RESTART_TIMEOUT_S:
            raise RuntimeError(f"{node.name} not ready with {count:,} instances within {RESTART_TIMEOUT_S:.0f} s")
        state = raft_state(node)
        if state is not None:
            if restart.http_s is None:
                restart.http_s = elapsed
            if state["ready"] and run.node_counts(node)[1] >= count:
                restart.ready_s = time.monotonic() - started
                restart.state = state
                break
        time.sleep(POLL_S)
    listed = 0
    conn = http.client.HTTPConnection(HOST, node.port, timeout=30)
    try:
        for n in range(services):
            conn.request("GET", f"{CONTEXT}/v1/ns/instance/list?serviceName={FILL_PREFIX}{n:05d}")
            response = conn.getresponse()
            body = response.read()
            if response.status == 200:
                listed += len(json.loads(body)["hosts"])
    finally:
        conn.close()
    restart.listed_s = time.monotonic() - started
    restart.listed = listed
    restart.rss = rss_bytes(node.pid)
    return node, restart


def restart_note(restart: Restart, count: int, how: str) -> str:
    state = restart.state
    note = (f"{how}; then from the start of the process: first HTTP answer {restart.http_s or 0:.2f} s, Raft ready "
            f"and {count:,} instances counted {restart.ready_s or 0:.2f} s, every service listed "
            f"({restart.listed:,} instances) {restart.listed_s or 0:.2f} s; commit index {state.get('commitIndex', '?')}, "
            f"{state.get('logEntries', '?')} log entries after the snapshot; RSS {restart.rss / 2**20:,.0f} MiB")
    if restart.listed != count:
        note += f"; WARNING: {restart.listed:,} of {count:,} listed"
    return note


def bench_raft_restart(run: Run) -> list[Row]:
    """fill one node (data dir, fsync on) with --raft-instances persistent instances; restart after SIGKILL and after SIGTERM."""
    count = run.s.raft_instances
    services = max(1, count // FILL_PER_SERVICE)
    directory = data_dir(run, "raft-restart")
    journal_dir = directory / "raft"
    started = time.monotonic()
    node = run.start_node("node-raft-restart", health_checks=False, data_dir=directory)
    try:
        wait_leader([node])
        empty_start_s = time.monotonic() - started
        rss_before = rss_bytes(node.pid)
        before = proposal_figures(node)
        connections = run.s.connections * FILL_CONNECTIONS_FACTOR
        fill = run.fill(node, FILL_PREFIX, services, count, name="fill-raft", measured=True, persistent=True,
                        connections=connections)
        rss_filled = rss_bytes(node.pid)
        buckets = histogram_buckets(figures_delta(proposal_figures(node), before))
        metrics = node_metrics(node)
        files = {"journal": file_size(journal_dir / "raft.journal"), "snapshot": file_size(journal_dir / "raft.snapshot")}
        run.procs.stop(node.proc, signal.SIGKILL, 5)
        node, killed = timed_restart(run, node, count, services)
        term_stop = run.stop_server(node, timeout=60)
        node, termed = timed_restart(run, node, count, services)
        files_after = {"journal": file_size(journal_dir / "raft.journal"),
                       "snapshot": file_size(journal_dir / "raft.snapshot")}
    finally:
        stopped = run.stop_server(node, timeout=60)
    seconds = fill["reached_s"] or fill["seconds"]
    fill_note = (f"{count:,} persistent instances ({services:,} services x {FILL_PER_SERVICE}) in {seconds:.1f} s, "
                 f"wrk {connections} connections; RSS {rss_before / 2**20:,.0f} -> {rss_filled / 2**20:,.0f} MiB "
                 f"(~{(rss_filled - rss_before) / count:,.0f} B/instance); {SAFE}; {disk_note(directory)}; "
                 f"{metrics.get('nacos_actors_raft_snapshots_total', 0):.0f} Raft snapshots during the fill "
                 f"(every 5,000 entries, each encoding every definition on the Raft actor; the last took "
                 f"{metrics.get('nacos_actors_raft_snapshot_seconds', 0) * 1000:,.0f} ms to encode); commit latency over the "
                 f"fill: {quantiles_text(buckets)}")
    if fill["error_count"]:
        fill_note += f"; ERRORS {fill['errors']}"
    rows = [
        Row("raft_fill", RAFT_RESTART_FIGURES[0][1], count / seconds, "inst/s", note=fill_note, throughput=True,
            data={"timeline_index": fill["timeline_index"], "fill": fill}),
        Row("raft_restart_kill", f"{RAFT_RESTART_FIGURES[1][1]} ({count:,} persistent)", killed.ready_s, "s",
            note=restart_note(killed, count, f"SIGKILL (journal replay); an empty node's start took {empty_start_s:.2f} s "
                                             f"the same way"),
            data=vars(killed)),
        Row("raft_restart_term", f"{RAFT_RESTART_FIGURES[2][1]} ({count:,} persistent)", termed.ready_s, "s",
            note=restart_note(termed, count, f"SIGTERM (exit {term_stop['exit_code']} after {term_stop['stop_s']:.1f} s)")
            + f"; SIGTERM at the end: exit {stopped['exit_code']} after {stopped['stop_s']:.1f} s",
            data=vars(termed)),
        Row("raft_journal_bytes", RAFT_RESTART_FIGURES[3][1], metrics.get("nacos_actors_raft_journal_bytes", 0), "bytes",
            note=f"nacos_actors_raft_journal_bytes after the fill ({metrics.get('nacos_actors_raft_log_entries', 0):,.0f} "
                 f"entries since the last snapshot); raft.journal on disk {files['journal']:,} B after the fill, "
                 f"{files_after['journal']:,} B after the two restarts"),
        Row("raft_snapshot_bytes", RAFT_RESTART_FIGURES[4][1], metrics.get("nacos_actors_raft_snapshot_bytes", 0),
            "bytes",
            note=f"nacos_actors_raft_snapshot_bytes after the fill (~{metrics.get('nacos_actors_raft_snapshot_bytes', 0) / count:,.0f} "
                 f"B/instance; encoded in {metrics.get('nacos_actors_raft_snapshot_seconds', 0) * 1000:,.0f} ms); "
                 f"raft.snapshot on disk {files['snapshot']:,} B after the fill, {files_after['snapshot']:,} B after "
                 f"the two restarts"),
    ]
    return rows
