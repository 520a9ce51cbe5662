"""The PushDriver's gRPC half, called directly with a recording Outbox: the StreamPushes it
hands over, the wake-ups it asks for, the metrics and the published counters."""

from __future__ import annotations

import json
import logging

import orjson
from prometheus_client import CollectorRegistry

from nacos_actors.core.grpc_push import GrpcPushConfig, GrpcPushCore
from nacos_actors.core.push import PushBoard, PushConfig, PushCore
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.drivers.push import PushCores, PushDriver
from nacos_actors.messages import (
    GrpcConnectionClosed,
    GrpcPushAnswered,
    GrpcSubscribe,
    GrpcUnsubscribe,
    QuerySubscribers,
    ServiceChange,
    ServicesChanged,
    Tick,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import Instance, Service, ServiceKey, instance_map
from nacos_actors.render.grpc import service_info
from nacos_actors.render.lists import RenderedInstances
from tests.drivers.support import RecordingReply

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@orders")


class RecordingOutbox:
    def __init__(self) -> None:
        self.streams: list = []
        self.datagrams: list = []
        self.wakes: list[int | None] = []

    def tell(self, actor, message) -> None:
        raise AssertionError("the push driver tells nobody")

    def call_peer(self, call) -> None:
        raise AssertionError("the push driver calls no peer")

    def send_datagrams(self, datagrams) -> None:
        self.datagrams.extend(datagrams)

    def send_to_streams(self, pushes) -> None:
        self.streams.extend(pushes)

    def wake_at(self, actor, deadline_ms) -> None:
        self.wakes.append(deadline_ms)


class Harness:
    def __init__(self, snapshots: dict[ServiceKey, Service] | None = None, **config) -> None:
        rendered = RenderedInstances()

        def render(service, key, clusters_text, clusters, now_ms):
            return orjson.dumps(service_info(service, key, clusters_text, clusters, False, now_ms, rendered))

        self.board = PushBoard()
        self.metrics = NodeMetrics(CollectorRegistry(), RegistryView(RegistryCore()), self.board)
        self.outbox = RecordingOutbox()
        config.setdefault("window_ms", 0)
        cores = PushCores(
            PushCore(PushConfig(), lambda *args: b"{}", 1),
            GrpcPushCore(GrpcPushConfig(**config), render),
        )
        known = snapshots or {}
        self.driver = PushDriver(cores, self.board, self.outbox, self.metrics, known.get)

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def pushes(self, outcome: str) -> float:
        return self.sample("nacos_actors_grpc_pushes_total", outcome=outcome)


def snapshot(*ports: int, modified_ms: int = 500) -> Service:
    return Service(SERVICE, instance_map(Instance("127.0.0.1", p) for p in ports), revision=1, modified_ms=modified_ms)


def subscription(connection: str = "c1", clusters: str = "") -> GrpcSubscription:
    return GrpcSubscription(
        connection,
        SERVICE,
        clusters,
        tuple(filter(None, clusters.split(","))),
        "10.0.0.1",
        "Nacos-Python-Client:v3.2.0",
        "shop",
    )


def test_a_subscription_is_pushed_the_current_snapshot_through_the_streams():
    harness = Harness({SERVICE: snapshot(80, modified_ms=777)})
    harness.driver.handle(GrpcSubscribe(subscription(clusters="DEFAULT")), 1_000)
    (push,) = harness.outbox.streams
    document = json.loads(push.body)
    assert push.connection_id == "c1" and push.type == "NotifySubscriberRequest"
    assert document["serviceInfo"]["lastRefTime"] == 777 and document["serviceInfo"]["clusters"] == "DEFAULT"
    assert [h["port"] for h in document["serviceInfo"]["hosts"]] == [80]
    assert harness.outbox.wakes[-1] == 1_000 + GrpcPushConfig().ack_timeout_ms
    assert harness.pushes("sent") == 1
    assert (harness.board.grpc.total, harness.board.grpc.awaiting_ack, harness.board.stats.total) == (1, 1, 1)


def test_a_change_reaches_every_subscriber_and_records_its_delay_and_answers():
    harness = Harness(ack_timeout_ms=100, max_sends=2)
    harness.driver.handle(GrpcSubscribe(subscription("c1")), 0)
    harness.driver.handle(GrpcSubscribe(subscription("c2")), 0)
    harness.outbox.streams.clear()
    harness.driver.handle(ServicesChanged((ServiceChange(SERVICE, snapshot(80)),), applied_ns=0), 10)
    assert sorted(p.connection_id for p in harness.outbox.streams) == ["c1", "c2"]
    assert harness.sample("nacos_actors_grpc_push_delay_seconds_count") == 2
    assert harness.pushes("superseded") == 2
    first, second = harness.outbox.streams
    harness.driver.handle(GrpcPushAnswered(first.connection_id, json.loads(first.body)["requestId"], True), 30)
    assert harness.pushes("acked") == 1 and harness.sample("nacos_actors_grpc_push_ack_seconds_count") == 1
    assert harness.board.grpc.cost_max_ms == 20
    harness.driver.handle(GrpcPushAnswered("c9", "12345", True), 30)
    assert harness.sample("nacos_actors_grpc_push_answers_unmatched_total") == 1
    harness.outbox.streams.clear()
    harness.driver.handle(Tick(), 110)
    (again,) = harness.outbox.streams
    assert again.connection_id == second.connection_id and harness.pushes("resent") == 1


def test_a_push_never_answered_is_given_up_and_logged(caplog):
    harness = Harness(ack_timeout_ms=100, max_sends=1)
    harness.driver.handle(GrpcSubscribe(subscription()), 0)
    with caplog.at_level(logging.INFO, logger="nacos_actors.drivers.push"):
        harness.driver.handle(Tick(), 100)
    assert harness.pushes("failed") == 1 and harness.board.stats.failed == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert "gRPC connection c1" in line and "no answer" in line


def test_closing_and_unsubscribing_abandon_pending_pushes():
    harness = Harness()
    harness.driver.handle(GrpcSubscribe(subscription("c1", "A")), 0)
    harness.driver.handle(GrpcSubscribe(subscription("c1", "B")), 0)
    harness.driver.handle(GrpcSubscribe(subscription("c2")), 0)
    harness.driver.handle(GrpcUnsubscribe("c1", SERVICE, "A"), 1)
    harness.driver.handle(GrpcConnectionClosed("c1"), 2)
    assert harness.pushes("abandoned") == 2 and harness.pushes("failed") == 0
    assert harness.board.grpc.subscribers == 1 and harness.board.stats.subscribers == 1
    reply = RecordingReply()
    harness.driver.handle(QuerySubscribers("public", reply), 3)
    assert [s.connection_id for s in reply.value] == ["c2"]


def test_refused_subscriptions_are_counted_by_limit():
    harness = Harness(max_subscribers_per_connection=1)
    harness.driver.handle(GrpcSubscribe(subscription("c1", "A")), 0)
    harness.driver.handle(GrpcSubscribe(subscription("c1", "B")), 0)
    assert harness.sample("nacos_actors_grpc_push_subscriptions_refused_total", limit="connection") == 1
    assert harness.board.grpc.refused == 1 and harness.board.stats.refused == 1
