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
from typing import Any, Iterable, Protocol, get_args

import pykka
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nacos_actors.messages import Command

# What GET /nacos/actuator/prometheus answers: the text format Nacos (Spring's actuator) serves.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
NACOS_MODULE = "naming"

# nacos_monitor names this node exports today. Nacos 1.4 also exports the push figures
# (totalPush, failedPush, avgPushCost, maxPushCost) and the health-check counts; they come
# with UDP push and health checks.
SERVICE_COUNT = "serviceCount"
IP_COUNT = "ipCount"
LEADER_STATUS = "leaderStatus"
# Nacos 1.4 sets leaderStatus only from its old Raft, which it retires as soon as every member
# runs >= 1.4.0 (at once when standalone): from then on the gauge stays 0. So does ours.
LEADER_STATUS_VALUE = 0

EXCEPTION_REQUEST = "requestFailed"  # a request answered 500 (a bug in the front)
EXCEPTION_ACTOR = "actorFailed"  # an actor failed on a message (the node then stops)

BEAT_OUTCOME_RECORDED = "recorded"  # a healthy instance: time recorded, no registry write
BEAT_OUTCOME_REVIVED = "revived"  # an unhealthy instance made healthy again (a registry write)
BEAT_OUTCOME_REREGISTERED = "reregistered"  # an unknown instance registered again from a full beat
BEAT_OUTCOME_NOT_FOUND = "not_found"  # a light beat for an unknown instance (code 20404)
BEAT_OUTCOMES = (BEAT_OUTCOME_RECORDED, BEAT_OUTCOME_REVIVED, BEAT_OUTCOME_REREGISTERED, BEAT_OUTCOME_NOT_FOUND)

WRITE_APPLIED = "applied"
WRITE_REJECTED = "rejected"

UNMATCHED_ROUTE = "unmatched"  # the route label of every request no route matched (404, 405)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MESSAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # bridge.MAX_BATCH is the largest batch


class RegistryCounts(Protocol):
    """What nacos_monitor reads: the registry core's counters (only whole ints are assigned)."""

    service_count: int
    instance_count: int


def command_label(command_type: type) -> str:
    """`RegisterInstance` -> `register_instance`: the `command` label of a registry write."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", command_type.__name__).lower()


COMMAND_TYPES: tuple[type, ...] = get_args(Command)


class NacosMonitorCollector(Collector):
    """`nacos_monitor{module="naming",name=...}`, read from the registry counters at scrape time.

    GET /v1/ns/operator/metrics reads the same counters, so the two always agree.
    """

    HELP = "Nacos naming monitor gauges (Nacos's MetricsMonitor names): services, instances, leader status"

    def __init__(self, counts: RegistryCounts) -> None:
        self._counts = counts

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("nacos_monitor", self.HELP, labels=["module", "name"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("nacos_monitor", self.HELP, labels=["module", "name"])
        family.add_metric([NACOS_MODULE, SERVICE_COUNT], self._counts.service_count)
        family.add_metric([NACOS_MODULE, IP_COUNT], self._counts.instance_count)
        family.add_metric([NACOS_MODULE, LEADER_STATUS], LEADER_STATUS_VALUE)
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


class NodeMetrics:
    """Every metric of one node, registered on the `registry` it is given.

    The attributes are ready-made label children, so recording costs one `inc`/`observe`:
    `beats[outcome]` (loop thread), `exceptions_request` (loop), `exceptions_actor` (the failing
    actor's thread), `write_batch_size` (registry actor). `counts` is read at scrape time.
    """

    def __init__(self, registry: CollectorRegistry, counts: RegistryCounts) -> None:
        self.registry = registry
        registry.register(NacosMonitorCollector(counts))
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

        self.request_seconds = Histogram(
            "nacos_actors_http_request_duration_seconds",
            "Time from routing a request to its answer, by route (the matched path pattern, "
            f"'{UNMATCHED_ROUTE}' when none matched), method and status",
            ["route", "method", "status"],
            registry=registry,
            buckets=REQUEST_BUCKETS,
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
        """The request-duration histogram of one (route, method, status). Any thread."""
        return self.request_seconds.labels(route, method, str(status))

    def exposition(self) -> bytes:
        """The text exposition format (0.0.4) of every metric. Any thread; reads /proc."""
        return generate_latest(self.registry)


def method_label(method: str) -> str:
    """A request method as a bounded label value: the usual verbs, else 'other'."""
    return method if method in KNOWN_METHODS else OTHER_METHOD
