"""Prometheus metrics of one node: Nacos's names, so existing dashboards keep working, and ours.

Nothing here is module-global. `run_node` creates one `NodeMetrics` around the
`CollectorRegistry` it serves and passes it to each actor and to the front; tests make their
own. What a figure reads at scrape time (the registry counts, mailbox depths, threads) is a
collector that asks its source then, so it can never disagree with that source.

Nacos's names (1.4.x `MetricsMonitor`): `nacos_monitor{module="naming",name=...}` gauges and
`nacos_exception_total{module="naming",name=...}`. Ours start with `nacos_actors_` and carry
their unit (`_seconds`, `_total`). Counters whose label values are known in advance start at 0
for each of them, so a dashboard never shows a hole where a count is simply zero; histograms
labelled by route or status get a series on their first observation.

Threads: the constructor runs anywhere before the node serves; each recording method says which
thread calls it; `exposition` may run on any thread (prometheus_client locks its values and
the collectors read only atomically assigned values).
"""

from __future__ import annotations

import os
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, get_args

import pykka
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from nacos_actors.core.consensus import PROPOSAL_OUTCOMES, ROLES, RaftBoard, RaftStatus
from nacos_actors.core.grpc_push import GRPC_REFUSAL_REASONS
from nacos_actors.core.health import BEAT_NOT_FOUND, BEAT_RECORDED, BEAT_REREGISTERED, BEAT_REVIVED
from nacos_actors.core.members import STATES, MemberBoard
from nacos_actors.core.peer_auth import REJECT_REASONS
from nacos_actors.core.probing import PROBE_KINDS, PROBE_OUTCOMES
from nacos_actors.core.push import REFUSAL_REASONS, PushBoard
from nacos_actors.messages import Command
from nacos_actors.model import HTTP_CHECKER, MYSQL_CHECKER, TCP_CHECKER

# What GET /nacos/actuator/prometheus answers: the text format Nacos (Spring's actuator) serves.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
NACOS_MODULE = "naming"
CORE_MODULE = "core"
LONG_CONNECTION = "longConnection"

# nacos_monitor names (Nacos 1.4's MetricsMonitor, plus 2.x's subscriberCount and
# pushPendingTaskCount).
SERVICE_COUNT = "serviceCount"
IP_COUNT = "ipCount"
LEADER_STATUS = "leaderStatus"
SUBSCRIBER_COUNT = "subscriberCount"
TOTAL_PUSH = "totalPush"
FAILED_PUSH = "failedPush"
AVG_PUSH_COST = "avgPushCost"
MAX_PUSH_COST = "maxPushCost"
PUSH_PENDING_TASK_COUNT = "pushPendingTaskCount"
# The active probes of persistent instances started since the node started, by checker type
# (Nacos's HealthCheckStatus counters, incremented as each probe starts). Nacos also zeroes them
# at midnight (its MetricsMonitor reset task); ours only grow until the node restarts. Spelling
# as Nacos's (`mysqlhealthCheck`).
ACTIVE_CHECK_NAMES = {TCP_CHECKER: "tcpHealthCheck", HTTP_CHECKER: "httpHealthCheck", MYSQL_CHECKER: "mysqlhealthCheck"}
# Nacos 1.4 sets leaderStatus only from its old Raft, which it retires as soon as every member
# runs >= 1.4.0 (at once when standalone): from then on the gauge stays 0. So does ours.
LEADER_STATUS_VALUE = 0

EXCEPTION_REQUEST = "requestFailed"  # a request answered 500 (a bug in the front)
EXCEPTION_ACTOR = "actorFailed"  # an actor failed on a message (the node then stops)

BEAT_OUTCOMES = (BEAT_RECORDED, BEAT_REVIVED, BEAT_REREGISTERED, BEAT_NOT_FOUND)  # see core.health.beat_outcome

HEALTH_UNHEALTHY = "unhealthy"  # a healthy instance missed its beat timeout
HEALTH_REMOVED = "removed"  # an instance missed its delete timeout and was removed
HEALTH_REVIVED = "revived"  # a beat made an unhealthy instance healthy again
HEALTH_TRANSITIONS = (HEALTH_UNHEALTHY, HEALTH_REMOVED, HEALTH_REVIVED)

WRITE_APPLIED = "applied"
WRITE_REJECTED = "rejected"

UNMATCHED_ROUTE = "unmatched"  # the route label of every request no route matched (404, 405)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"

PUSH_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MESSAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # bridge.MAX_BATCH is the largest batch


class _LoopHistogramChild:
    """One label set of a LoopHistogram: plain counts per bucket and a sum."""

    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self._bounds, amount)] += 1
        self.total += amount


class LoopHistogram(Collector):
    """A histogram whose observations all come from one thread (the event loop), kept in plain
    lists without prometheus_client's per-value locks: observing costs a bisect and two adds
    instead of about 2 us, on every request. Exported like a Histogram (`_bucket`, `_count`,
    `_sum`); a scrape on another thread copies each list in one step, so a sample's buckets and
    count always agree (its sum may miss an observation made meanwhile)."""

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...], registry: Any
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], _LoopHistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> _LoopHistogramChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _LoopHistogramChild(self._bounds)
        return child

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=list(self._labelnames))
        edges = [*(floatToGoString(b) for b in self._bounds), "+Inf"]  # type: ignore[no-untyped-call]
        for values, child in list(self._children.items()):
            counts, total = list(child.counts), child.total
            cumulative, running = [], 0
            for edge, count in zip(edges, counts, strict=True):
                running += count
                cumulative.append((edge, running))
            family.add_metric(list(values), cumulative, total)
        yield family


class RegistryCounts(Protocol):
    """What nacos_monitor reads: the registry's counters (only whole ints are assigned)."""

    @property
    def service_count(self) -> int: ...

    @property
    def instance_count(self) -> int: ...


def command_label(command_type: type) -> str:
    """`RegisterInstance` -> `register_instance`: the `command` label of a registry write."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", command_type.__name__).lower()


COMMAND_TYPES: tuple[type, ...] = get_args(Command)


class PushFigures(Protocol):
    """What nacos_monitor reads of push: the push actor's latest published PushStats."""

    @property
    def stats(self) -> Any: ...


class NacosMonitorCollector(Collector):
    """`nacos_monitor{module="naming",name=...}`, read at scrape time from the registry counters
    and the push actor's published stats.

    GET /v1/ns/operator/metrics and /operator/push/state read the same sources, so they agree.
    """

    HELP = (
        "Nacos naming monitor gauges (Nacos's MetricsMonitor names): services, instances, "
        "subscribers, pushes (total, failed, ack cost in ms), pending pushes, leader status, "
        "active probes started by checker type; and module core's longConnection (gRPC connections)"
    )

    def __init__(self, counts: RegistryCounts, push: PushFigures) -> None:
        self._counts = counts
        self._push = push
        # Probes started per checker type (ProbeMetrics.started; whole ints, written by the
        # probe actor alone), read at scrape time for tcpHealthCheck and the others.
        self.probes_started: Mapping[str, int] = {}
        # Nacos 2.x's `nacos_monitor{module="core",name="longConnection"}`: the gRPC server sets
        # it to its connection count (a len() read at scrape time).
        self.long_connections: Callable[[], int] | None = None

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("nacos_monitor", self.HELP, labels=["module", "name"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("nacos_monitor", self.HELP, labels=["module", "name"])
        family.add_metric([NACOS_MODULE, SERVICE_COUNT], self._counts.service_count)
        family.add_metric([NACOS_MODULE, IP_COUNT], self._counts.instance_count)
        family.add_metric([NACOS_MODULE, LEADER_STATUS], LEADER_STATUS_VALUE)
        push = self._push.stats
        family.add_metric([NACOS_MODULE, SUBSCRIBER_COUNT], push.subscribers)
        family.add_metric([NACOS_MODULE, TOTAL_PUSH], push.total)
        family.add_metric([NACOS_MODULE, FAILED_PUSH], push.failed)
        family.add_metric([NACOS_MODULE, AVG_PUSH_COST], push.average_cost_ms)
        family.add_metric([NACOS_MODULE, MAX_PUSH_COST], push.cost_max_ms)
        family.add_metric([NACOS_MODULE, PUSH_PENDING_TASK_COUNT], push.pending_services)
        started = self.probes_started
        for kind, name in ACTIVE_CHECK_NAMES.items():
            family.add_metric([NACOS_MODULE, name], started.get(kind, 0))
        long_connections = self.long_connections
        family.add_metric([CORE_MODULE, LONG_CONNECTION], long_connections() if long_connections is not None else 0)
        return [family]


class MailboxCollector(Collector):
    """`nacos_actors_actor_mailbox_depth{actor}`: messages waiting in each watched actor's inbox.

    `watch`/`forget` run on the actor's own thread (on_start/on_stop); `collect` on the scraping
    thread. Only whole dicts are assigned, so a scrape sees one consistent set of actors.
    """

    NAME = "nacos_actors_actor_mailbox_depth"
    HELP = "Messages waiting in an actor's mailbox, at scrape time"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actors: dict[str, pykka.ActorRef[Any]] = {}

    def watch(self, actor: str, ref: pykka.ActorRef[Any]) -> None:
        with self._lock:
            self._actors = {**self._actors, actor: ref}

    def forget(self, actor: str) -> None:
        with self._lock:
            self._actors = {name: ref for name, ref in self._actors.items() if name != actor}

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["actor"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["actor"])
        for actor, ref in sorted(self._actors.items()):
            qsize = getattr(ref.actor_inbox, "qsize", None)
            if qsize is not None:
                family.add_metric([actor], qsize())
        return [family]


class ThreadsCollector(Collector):
    """`nacos_actors_process_threads`: OS threads of this process (ProcessCollector has no such figure)."""

    NAME = "nacos_actors_process_threads"
    HELP = "Threads of this process (OS threads from /proc/self/task; Python threads where /proc is missing)"

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP)]

    def collect(self) -> Iterable[Metric]:
        try:
            threads = len(os.listdir("/proc/self/task"))
        except OSError:
            threads = threading.active_count()
        return [GaugeMetricFamily(self.NAME, self.HELP, value=threads)]


class PushMetrics:
    """The push actor's figures, as ready label children. Recorded on the push actor's thread,
    but `send_errors` and `datagrams_oversized`/`_overflow`, which the push socket records on
    the event loop."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.delay_seconds = Histogram(
            "nacos_actors_push_delay_seconds",
            "Time from the registry applying a change to the first send of the push it caused",
            registry=registry,
            buckets=PUSH_BUCKETS,
        )
        self.ack_seconds = Histogram(
            "nacos_actors_push_ack_seconds",
            "Time from the first send of a push to its ack (Nacos's push cost)",
            registry=registry,
            buckets=PUSH_BUCKETS,
        )
        pushes = Counter(
            "nacos_actors_pushes",
            "Pushes (one packet to one subscriber) by how they ended: acked; failed (no ack after "
            "every send, the subscriber left, or too large for UDP); superseded (a newer packet "
            "replaced it); dropped (too many pushes were awaiting their ack)",
            ["outcome"],
            registry=registry,
        )
        self.acked = pushes.labels("acked")
        self.failed = pushes.labels("failed")
        self.superseded = pushes.labels("superseded")
        self.dropped = pushes.labels("dropped")
        refused = Counter(
            "nacos_actors_push_subscriptions_refused",
            "Push subscriptions not added because a limit was reached: per source address, per "
            "service, or in all (the client keeps polling)",
            ["limit"],
            registry=registry,
        )
        self.subscriptions_refused = {reason: refused.labels(reason) for reason in REFUSAL_REASONS}
        sends = Counter(
            "nacos_actors_push_sends",
            "Datagrams sent to subscribers: first sends and resends (after no ack in time)",
            ["kind"],
            registry=registry,
        )
        self.sends_first = sends.labels("first")
        self.sends_retry = sends.labels("retry")
        self.send_errors = Counter(
            "nacos_actors_push_send_errors",
            "Sends the operating system refused (the packet stays on its resend schedule)",
            registry=registry,
        )
        datagrams = Counter(
            "nacos_actors_push_datagrams_received",
            "Datagrams received on the push socket: ack (matched a push), unmatched (a valid ack "
            "for no pending push), malformed (not a push-ack; dropped), oversized (larger than "
            "any ack; dropped unread), overflow (too many on their way to the push actor; dropped)",
            ["outcome"],
            registry=registry,
        )
        self.datagrams_ack = datagrams.labels("ack")
        self.datagrams_unmatched = datagrams.labels("unmatched")
        self.datagrams_malformed = datagrams.labels("malformed")
        self.datagrams_oversized = datagrams.labels("oversized")
        self.datagrams_overflow = datagrams.labels("overflow")
        self.grpc = GrpcPushMetrics(registry)


GRPC_PUSH_OUTCOMES = ("sent", "resent", "acked", "failed", "superseded", "dropped", "abandoned")


class GrpcPushMetrics:
    """The push actor's figures of pushes over gRPC streams (NotifySubscriberRequest), as ready
    label children; recorded on the push actor's thread."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.delay_seconds = Histogram(
            "nacos_actors_grpc_push_delay_seconds",
            "Time from the registry applying a change to the first send of the gRPC push it caused",
            registry=registry,
            buckets=PUSH_BUCKETS,
        )
        self.ack_seconds = Histogram(
            "nacos_actors_grpc_push_ack_seconds",
            "Time from the first send of a gRPC push to the client's successful answer",
            registry=registry,
            buckets=PUSH_BUCKETS,
        )
        pushes = Counter(
            "nacos_actors_grpc_pushes",
            "gRPC pushes (one NotifySubscriberRequest to one subscription): sent (first sends), "
            "resent (no answer in time, or a failed answer), and how they ended: acked; failed "
            "(no successful answer after every send); superseded (a newer state replaced it); "
            "dropped (too many were awaiting answers); abandoned (the connection closed or the "
            "client unsubscribed first)",
            ["outcome"],
            registry=registry,
        )
        outcome = {name: pushes.labels(name) for name in GRPC_PUSH_OUTCOMES}
        self.sent, self.resent, self.acked = outcome["sent"], outcome["resent"], outcome["acked"]
        self.failed, self.superseded = outcome["failed"], outcome["superseded"]
        self.dropped, self.abandoned = outcome["dropped"], outcome["abandoned"]
        self.unmatched = Counter(
            "nacos_actors_grpc_push_answers_unmatched",
            "Answers on a gRPC stream that match no push awaiting one (late, or unknown requestId)",
            registry=registry,
        )
        refused = Counter(
            "nacos_actors_grpc_push_subscriptions_refused",
            "gRPC subscriptions not added because a limit was reached: per connection, per "
            "service, or in all (the client gets no pushes for it)",
            ["limit"],
            registry=registry,
        )
        self.subscriptions_refused = {reason: refused.labels(reason) for reason in GRPC_REFUSAL_REASONS}


SYNC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SYNC_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
FORWARD_OUTCOMES = ("ok", "failed")


class MemberStateCollector(Collector):
    """`nacos_actors_member_state{member,state}`: 1 for each member's current state, 0 for the
    others, read at scrape time from the member actor's published view (empty when standalone)."""

    def __init__(self) -> None:
        self.board: MemberBoard | None = None

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "nacos_actors_member_state",
            "Each cluster member's state as this node sees it (1 = current): STARTING, UP, SUSPICIOUS, DOWN",
            labels=["member", "state"],
        )
        board = self.board
        if board is not None:
            for address, status in board.view.members.items():
                for state in STATES:
                    family.add_metric([address, state], 1.0 if status.state == state else 0.0)
        yield family


RAFT_PROPOSAL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 10.0)


class RaftStateCollector(Collector):
    """This member's Raft state, read at scrape time from the Raft driver's published status:
    term, role (1 = current), commit and applied index, journal entries and bytes, the last
    snapshot's size and time, and whether it is ready (caught up)."""

    def __init__(self) -> None:
        self.board: RaftBoard | None = None

    def collect(self) -> Iterable[Metric]:
        status = self.board.status if self.board is not None else RaftStatus()
        gauges = (
            ("nacos_actors_raft_term", "The Raft term this member is in", status.term),
            (
                "nacos_actors_raft_commit_index",
                "The highest Raft log index this member knows committed",
                status.commit_index,
            ),
            ("nacos_actors_raft_applied_index", "The highest Raft log index this member applied", status.applied_index),
            (
                "nacos_actors_raft_log_entries",
                "Entries in this member's Raft journal since its last snapshot",
                status.log_entries,
            ),
            (
                "nacos_actors_raft_journal_bytes",
                "Size of this member's Raft journal file (0 in memory)",
                status.journal_bytes,
            ),
            (
                "nacos_actors_raft_snapshot_bytes",
                "Size of the last Raft snapshot this member wrote",
                status.snapshot_bytes,
            ),
            (
                "nacos_actors_raft_snapshot_seconds",
                "Time the last Raft snapshot took to encode",
                status.snapshot_seconds,
            ),
            (
                "nacos_actors_raft_ready",
                "1 once this member has applied what the leader had committed",
                float(status.ready),
            ),
        )
        for name, documentation, value in gauges:
            family = GaugeMetricFamily(name, documentation)
            family.add_metric([], float(value))
            yield family
        roles = GaugeMetricFamily("nacos_actors_raft_role", "This member's Raft role (1 = current)", labels=["role"])
        for role in ROLES:
            roles.add_metric([role], 1.0 if status.role == role else 0.0)
        yield roles


class RaftMetrics:
    """Raft figures: proposals by outcome and their latency (the Raft actor), the state gauges
    of RaftStateCollector (read at scrape time), and persistent writes counted with the
    registry's writes by command."""

    def __init__(self, registry: CollectorRegistry, writes: dict[type, tuple[Any, Any]]) -> None:
        self.state = RaftStateCollector()
        registry.register(self.state)
        proposals = Counter(
            "nacos_actors_raft_proposals",
            "Persistent writes proposed to Raft by this member, by outcome: applied, refused (a 4xx), "
            "no_leader, leader_changed, timed_out (outcome unknown), overloaded, failed (all 503s)",
            ["outcome"],
            registry=registry,
        )
        self._proposals = {outcome: proposals.labels(outcome) for outcome in PROPOSAL_OUTCOMES}
        self._latency = Histogram(
            "nacos_actors_raft_proposal_duration_seconds",
            "Time from proposing a persistent write to its commit and apply on this member (or its failure)",
            registry=registry,
            buckets=RAFT_PROPOSAL_BUCKETS,
        )
        self._snapshots = Counter(
            "nacos_actors_raft_snapshots", "Raft snapshots this member wrote (log compactions)", registry=registry
        )
        self._writes = writes

    def proposal(self, outcome: str, seconds: float) -> None:
        """Record one proposal's end. Raft actor thread."""
        self._proposals[outcome].inc()
        self._latency.observe(seconds)

    def write(self, command: type, applied: bool) -> None:
        """Count a persistent write with the registry's writes. Raft actor thread."""
        counters = self._writes.get(command)
        if counters is not None:
            counters[0 if applied else 1].inc()

    def snapshot(self, size: int, seconds: float) -> None:
        """Count a snapshot (its size and time are read from the board). Raft actor thread."""
        self._snapshots.inc()


class ClusterMetrics:
    """Distro and member figures, labelled by peer (children made on first use).

    Threads: `batch*`, `sync_lag`, `quarantined`, `verify_repairs` on the distro actor; `forwarded`
    and `peer_rejected` on the loop; `member_changes` on the member actor.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.states = MemberStateCollector()
        registry.register(self.states)
        self._batches = Counter(
            "nacos_actors_distro_batches",
            "Distro sync requests to each peer by outcome (ok = applied by the peer, failed = retried later)",
            ["peer", "outcome"],
            registry=registry,
        )
        self._batch_services = Histogram(
            "nacos_actors_distro_batch_services",
            "Services per Distro sync request, by peer",
            ["peer"],
            registry=registry,
            buckets=SYNC_SIZE_BUCKETS,
        )
        self._sync_lag = Histogram(
            "nacos_actors_distro_sync_lag_seconds",
            "From a service's first unsent change to the peer's acknowledgement of a batch holding it, by peer",
            ["peer"],
            registry=registry,
            buckets=SYNC_BUCKETS,
        )
        self._batch_splits = Counter(
            "nacos_actors_distro_batch_splits",
            "Failed Distro sync requests split in two halves sent on their own, by peer",
            ["peer"],
            registry=registry,
        )
        self._quarantines = Counter(
            "nacos_actors_distro_quarantines",
            "Services put in quarantine for a peer (they failed alone again: sent only alone, with backoff)",
            ["peer"],
            registry=registry,
        )
        self._quarantined = Gauge(
            "nacos_actors_distro_quarantined_services",
            "Services in quarantine for a peer now",
            ["peer"],
            registry=registry,
        )
        self._verify_repairs = Counter(
            "nacos_actors_distro_verify_repairs",
            "Services a peer asked for again after comparing our verify digests (drift repaired), by peer",
            ["peer"],
            registry=registry,
        )
        forwarded = Counter(
            "nacos_actors_distro_forwarded_requests",
            "Client writes and beats forwarded to the responsible member, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.forwarded = {outcome: forwarded.labels(outcome) for outcome in FORWARD_OUTCOMES}
        self.replicated_services = Counter(
            "nacos_actors_distro_replicated_services",
            "Service states received from peers that changed this node's registry",
            registry=registry,
        )
        self._member_changes = Counter(
            "nacos_actors_member_state_changes",
            "Changes of a member's state as this node sees it, by member and new state",
            ["member", "state"],
            registry=registry,
        )
        # Loop thread (the HTTP front). Every reason starts at 0.
        rejected = Counter(
            "nacos_actors_peer_rejected",
            "Calls to the peer endpoints, and requests marked forwarded, refused (403) because they are not a "
            "member's, by reason: not_member, wrong_address (a member's name from another address), unsigned, "
            "stale (time outside the signature window: a replay, or a clock off), bad_signature",
            ["reason"],
            registry=registry,
        )
        self.peer_rejected = {reason: rejected.labels(reason) for reason in REJECT_REASONS}

    def start_peers(self, peers: Iterable[str]) -> None:
        """Make every per-peer series now, so a dashboard shows a zero rather than a hole."""
        for peer in peers:
            for outcome in ("ok", "failed"):
                self._batches.labels(peer, outcome)
            self._batch_services.labels(peer)
            self._sync_lag.labels(peer)
            self._verify_repairs.labels(peer)
            self._batch_splits.labels(peer)
            self._quarantines.labels(peer)
            self._quarantined.labels(peer)

    def batch(self, peer: str, ok: bool, services: int, lag_seconds: float) -> None:
        self._batches.labels(peer, "ok" if ok else "failed").inc()
        if ok:
            self._batch_services.labels(peer).observe(services)
            self._sync_lag.labels(peer).observe(lag_seconds)

    def batch_split(self, peer: str) -> None:
        self._batch_splits.labels(peer).inc()

    def quarantined(self, peer: str, entered: int, now_held: int) -> None:
        """`entered` services just went into quarantine for `peer`; `now_held` are in it now."""
        self._quarantines.labels(peer).inc(entered)
        self._quarantined.labels(peer).set(now_held)

    def verify_repairs(self, peer: str, services: int) -> None:
        self._verify_repairs.labels(peer).inc(services)

    def member_changed(self, member: str, state: str) -> None:
        self._member_changes.labels(member, state).inc()


class OpenConnectionsCollector(Collector):
    """`nacos_actors_connections_open`: HTTP connections open at scrape time, read from the
    connection guard (`source`, set once it exists; an int read is atomic)."""

    NAME = "nacos_actors_connections_open"
    HELP = "HTTP connections open now (at most max_connections)"

    def __init__(self) -> None:
        self.source: Callable[[], int] | None = None

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP)]

    def collect(self) -> Iterable[Metric]:
        source = self.source
        return [GaugeMetricFamily(self.NAME, self.HELP, value=source() if source is not None else 0)]


CONNECTION_REJECTIONS = ("max_connections", "evicted", "header_timeout")


class ConnectionMetrics:
    """The HTTP connection limits' figures (nacos_actors.http.connections). Recorded on the loop."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = OpenConnectionsCollector()
        registry.register(self.open)
        rejected = Counter(
            "nacos_actors_connections_rejected",
            "HTTP connections the node refused or cut off, by reason: max_connections (refused on "
            "arrival: every open one was in a request), evicted (closed while waiting for a request, "
            "to make room for a new one), header_timeout (request headers too slow: 408, closed)",
            ["reason"],
            registry=registry,
        )
        self.rejected_max_connections, self.rejected_evicted, self.rejected_header_timeout = (
            rejected.labels(reason) for reason in CONNECTION_REJECTIONS
        )
        self.idle_closed = Counter(
            "nacos_actors_connections_idle_closed",
            "Keep-alive HTTP connections closed after idle_timeout_ms without a request",
            registry=registry,
        )


# gRPC (issue 16): the request types the server knows (any other is `unknown`), the client
# families a clientVersion is sorted into, how connections end, and the version label's bounds.
GRPC_REQUEST_TYPES = (
    "ServerCheckRequest",
    "HealthCheckRequest",
    "InstanceRequest",
    "BatchInstanceRequest",
    "PersistentInstanceRequest",
    "ServiceQueryRequest",
    "SubscribeServiceRequest",
    "ServiceListRequest",
)
GRPC_UNKNOWN_TYPE = "unknown"
GRPC_CLIENTS = ("python", "rust", "java", "go", "node", "other")
GRPC_CLOSE_REASONS = ("ended", "unanswered", "no_setup")
GRPC_VERSION_LENGTH = 64
GRPC_VERSION_VALUES = 32
GRPC_OTHER_VERSION = "other"


def grpc_client_family(client_version: str) -> str:
    """The client family of a ConnectionSetupRequest's clientVersion (a bounded label):
    `Nacos-Python-Client:v3.2.0` is python, `Nacos-Rust-Client:0.8.0` rust, `Nacos-Java-Client`
    java, `Nacos-Go-Client` go, a Node client node; anything else other."""
    lowered = client_version.lower()
    for family in GRPC_CLIENTS[:-1]:
        if family in lowered:
            return family
    return "other"


class GrpcMetrics:
    """The gRPC layer's figures (nacos_actors.grpc.server). Recorded on the event loop.

    `connected(version)` / `disconnected(version)` keep the connection gauges by client family
    and by version text (at most GRPC_VERSION_LENGTH characters and GRPC_VERSION_VALUES distinct
    values; later ones count as `other`); `request(type)` answers the (ok, error, seconds)
    children of a request type (bounded to the known types)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "nacos_actors_grpc_connections",
            "gRPC connections set up now, by client family (from their clientVersion)",
            ["client"],
            registry=registry,
        )
        for client in GRPC_CLIENTS:
            self.connections.labels(client)
        self.client_versions = Gauge(
            "nacos_actors_grpc_client_versions",
            "gRPC connections set up now, by clientVersion (64 characters at most; past 32 distinct values, `other`)",
            ["version"],
            registry=registry,
        )
        self._versions: set[str] = set()
        requests = Counter(
            "nacos_actors_grpc_requests",
            "gRPC unary requests answered, by request type (unknown: a type the server has no "
            "handler for) and outcome (ok, error: an ErrorResponse)",
            ["type", "outcome"],
            registry=registry,
        )
        seconds = Histogram(
            "nacos_actors_grpc_request_seconds",
            "Time to answer a gRPC unary request, by request type",
            ["type"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self._requests = {
            kind: (requests.labels(kind, "ok"), requests.labels(kind, "error"), seconds.labels(kind))
            for kind in (*GRPC_REQUEST_TYPES, GRPC_UNKNOWN_TYPE)
        }
        closed = Counter(
            "nacos_actors_grpc_connections_closed",
            "gRPC connections gone, by reason: ended (the client's stream ended), unanswered "
            "(evicted: no answer to a ClientDetectionRequest), no_setup (evicted: no "
            "ConnectionSetupRequest in time)",
            ["reason"],
            registry=registry,
        )
        self.closed = {reason: closed.labels(reason) for reason in GRPC_CLOSE_REASONS}
        self.refused = Counter(
            "nacos_actors_grpc_connections_refused",
            "gRPC streams refused with RESOURCE_EXHAUSTED: grpc_max_connections were open",
            registry=registry,
        )
        self.stream_dropped = Counter(
            "nacos_actors_grpc_stream_dropped",
            "Server requests not written on a gRPC stream: its queue (grpc_stream_queue) was full, "
            "or its connection was gone",
            registry=registry,
        )

    def request(self, kind: str) -> tuple[Any, Any, Any]:
        """(ok counter, error counter, seconds histogram) of a request type."""
        return self._requests.get(kind) or self._requests[GRPC_UNKNOWN_TYPE]

    def version_label(self, client_version: str) -> str:
        """The bounded `version` label of a clientVersion."""
        label = client_version[:GRPC_VERSION_LENGTH] or "unknown"
        if label in self._versions:
            return label
        if len(self._versions) >= GRPC_VERSION_VALUES:
            return GRPC_OTHER_VERSION
        self._versions.add(label)
        return label

    def connected(self, client_version: str) -> str:
        """Count a connection set up; answers its version label (to give `disconnected`)."""
        label = self.version_label(client_version)
        self.connections.labels(grpc_client_family(client_version)).inc()
        self.client_versions.labels(label).inc()
        return label

    def disconnected(self, client_version: str, label: str) -> None:
        self.connections.labels(grpc_client_family(client_version)).dec()
        self.client_versions.labels(label).dec()


# A probe is a TCP connect or one HTTP/SQL round trip on the local network, bounded by
# health_probe_timeout_ms (500 ms by default, at most 60 s).
PROBE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROBE_HEALTHY = "healthy"
PROBE_UNHEALTHY = "unhealthy"
PROBE_VERDICTS = (PROBE_HEALTHY, PROBE_UNHEALTHY)


class ProbeRecorder(Protocol):
    """What the probe driver records of the active probes of persistent instances. `kind` is a
    checker type of PROBE_KINDS (TCP, HTTP, MYSQL), `outcome` one of PROBE_OUTCOMES."""

    def probe_started(self, kind: str) -> None: ...

    def probe_finished(self, kind: str, outcome: str, seconds: float) -> None: ...

    def verdict(self, kind: str, healthy: bool) -> None: ...

    def figures(self, in_flight: int, targets: int) -> None: ...


class ProbeMetrics:
    """The active probes' figures (a ProbeRecorder). Recorded on the probe actor's thread.

    Every (type, outcome) and (type, verdict) series exists from the start at 0, and the latency
    histogram has a series per type, so `increase()` sees a first probe and a dashboard shows a
    zero rather than a hole. `started` counts the probes started per type since the node
    started: nacos_monitor's tcpHealthCheck, httpHealthCheck and mysqlhealthCheck read it at
    scrape time. A kind or outcome outside PROBE_KINDS / PROBE_OUTCOMES is not counted.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        probes = Counter(
            "nacos_actors_health_probes",
            "Active health probes of persistent instances, by checker type (TCP, HTTP, MYSQL) and "
            "outcome: ok; timeout (no answer in health_probe_timeout_ms); refused (connection refused "
            "or reset: unhealthy at once); bad_answer (an HTTP status or SQL answer that is not "
            "healthy); error (anything else)",
            ["type", "outcome"],
            registry=registry,
        )
        self._outcomes = {
            (kind, outcome): probes.labels(kind, outcome) for kind in PROBE_KINDS for outcome in PROBE_OUTCOMES
        }
        seconds = Histogram(
            "nacos_actors_health_probe_seconds",
            "Time from starting an active health probe to its outcome, by checker type",
            ["type"],
            registry=registry,
            buckets=PROBE_BUCKETS,
        )
        self._seconds = {kind: seconds.labels(kind) for kind in PROBE_KINDS}
        verdicts = Counter(
            "nacos_actors_health_probe_verdicts",
            "Health changes the active probes proposed (through Raft), by checker type and verdict: "
            "healthy (health_check_times successes in a row), unhealthy (as many failures in a row, "
            "or one refused connection / unexpected answer)",
            ["type", "verdict"],
            registry=registry,
        )
        self._verdicts = {
            (kind, healthy): verdicts.labels(kind, PROBE_HEALTHY if healthy else PROBE_UNHEALTHY)
            for kind in PROBE_KINDS
            for healthy in (True, False)
        }
        self._in_flight = Gauge(
            "nacos_actors_health_probes_in_flight",
            "Active health probes running now (at most health_probe_max_in_flight)",
            registry=registry,
        )
        self._targets = Gauge(
            "nacos_actors_health_probe_targets",
            "Persistent instances this member probes (those of the services it is responsible for "
            "whose cluster's checker is TCP, HTTP or MYSQL)",
            registry=registry,
        )
        self.started: dict[str, int] = dict.fromkeys(PROBE_KINDS, 0)

    def probe_started(self, kind: str) -> None:
        """Count a probe started (nacos_monitor's tcpHealthCheck and the others)."""
        if kind in self.started:
            self.started[kind] += 1

    def probe_finished(self, kind: str, outcome: str, seconds: float) -> None:
        """Count a probe's outcome and observe how long it took."""
        counter = self._outcomes.get((kind, outcome))
        if counter is not None:
            counter.inc()
            self._seconds[kind].observe(seconds)

    def verdict(self, kind: str, healthy: bool) -> None:
        """Count a health change proposed for an instance `kind` probed."""
        counter = self._verdicts.get((kind, healthy))
        if counter is not None:
            counter.inc()

    def figures(self, in_flight: int, targets: int) -> None:
        """Set the probes running now and the instances probed."""
        self._in_flight.set(in_flight)
        self._targets.set(targets)


class NodeMetrics:
    """Every metric of one node, registered on the `registry` it is given.

    The attributes are ready-made label children, so recording costs one `inc`/`observe`:
    `beats[outcome]` (loop thread), `exceptions_request` (loop), `exceptions_actor` (the failing
    actor's thread), `write_batch_size` (registry actor), `health_transitions[transition]`
    (registry actor; `revived` on the loop), `push` (push actor), `probes` (probe actor).
    `counts` and `push_figures` are read at scrape time.
    """

    def __init__(
        self, registry: CollectorRegistry, counts: RegistryCounts, push_figures: PushFigures | None = None
    ) -> None:
        self.registry = registry
        self.push_figures = push_figures if push_figures is not None else PushBoard()
        self.monitor = NacosMonitorCollector(counts, self.push_figures)
        registry.register(self.monitor)
        self.mailboxes = MailboxCollector()
        registry.register(self.mailboxes)
        registry.register(ThreadsCollector())
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

        exceptions = Counter(
            "nacos_exception",
            "Unexpected errors (Nacos's name): requestFailed = a request answered 500, "
            "actorFailed = an actor failed on a message and the node stopped",
            ["module", "name"],
            registry=registry,
        )
        self.exceptions_request = exceptions.labels(NACOS_MODULE, EXCEPTION_REQUEST)
        self.exceptions_actor = exceptions.labels(NACOS_MODULE, EXCEPTION_ACTOR)

        self.request_seconds = LoopHistogram(
            "nacos_actors_http_request_duration_seconds",
            "Time from routing a request to its answer, by route (the matched path pattern, "
            f"'{UNMATCHED_ROUTE}' when none matched), method and status",
            ("route", "method", "status"),
            REQUEST_BUCKETS,
            registry,
        )

        beats = Counter(
            "nacos_actors_beats",
            "Heartbeats by outcome: recorded (healthy, no registry write), revived (made healthy "
            "again), reregistered (an unknown instance registered from a full beat), not_found "
            "(a light beat for an unknown instance, code 20404)",
            ["outcome"],
            registry=registry,
        )
        self.beats = {outcome: beats.labels(outcome) for outcome in BEAT_OUTCOMES}

        writes = Counter(
            "nacos_actors_registry_writes",
            "Commands the registry actor applied or rejected (a 4xx), by command",
            ["command", "outcome"],
            registry=registry,
        )
        self._writes = {
            kind: (
                writes.labels(command_label(kind), WRITE_APPLIED),
                writes.labels(command_label(kind), WRITE_REJECTED),
            )
            for kind in COMMAND_TYPES
        }
        self.write_batch_size = Histogram(
            "nacos_actors_registry_write_batch_size",
            "Commands per write batch (the writes of one event-loop turn, one mailbox message)",
            registry=registry,
            buckets=BATCH_BUCKETS,
        )

        transitions = Counter(
            "nacos_actors_health_transitions",
            "Instance health changes by beats: unhealthy (missed its beat timeout), removed "
            "(missed its delete timeout), revived (a beat made it healthy again)",
            ["transition"],
            registry=registry,
        )
        self.health_transitions = {name: transitions.labels(name) for name in HEALTH_TRANSITIONS}
        self.push = PushMetrics(registry)
        self.cluster = ClusterMetrics(registry)
        self.connections = ConnectionMetrics(registry)
        self.grpc = GrpcMetrics(registry)
        self.raft = RaftMetrics(registry, self._writes)
        self.probes = ProbeMetrics(registry)
        self.monitor.probes_started = self.probes.started
        self.replicated_services = self.cluster.replicated_services

        self._message_seconds = Histogram(
            "nacos_actors_actor_message_duration_seconds",
            "Time an actor spends handling one message, by actor and message type",
            ["actor", "message"],
            registry=registry,
            buckets=MESSAGE_BUCKETS,
        )

    def write_counters(self) -> dict[type, tuple[Any, Any]]:
        """For each command type, its (applied, rejected) counters. For the registry actor."""
        return dict(self._writes)

    def message_seconds(self, actor: str, message: type) -> Any:
        """The handling-time histogram of one actor's message type (look it up once, observe often)."""
        return self._message_seconds.labels(actor, message.__name__)

    def request_seconds_child(self, route: str, method: str, status: int) -> Any:
        """The request-duration histogram of one (route, method, status). Event loop thread."""
        return self.request_seconds.labels(route, method, str(status))

    def exposition(self) -> bytes:
        """The text exposition format (0.0.4) of every metric. Any thread; reads /proc."""
        return generate_latest(self.registry)


def method_label(method: str) -> str:
    """A request method as a bounded label value: the usual verbs, else 'other'."""
    return method if method in KNOWN_METHODS else OTHER_METHOD
