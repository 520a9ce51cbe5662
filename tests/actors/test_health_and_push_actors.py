"""HealthCheckActor and PushActor as threads, wired to a RegistryActor as the node wires them."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest
from prometheus_client import CollectorRegistry

from nacos_actors.actors.health import HealthCheckActor
from nacos_actors.actors.push import PushActor, open_push_socket
from nacos_actors.actors.registry import RegistryActor
from nacos_actors.beats import BeatLog
from nacos_actors.core.health import HealthConfig, HealthCore
from nacos_actors.core.push import PushBoard, PushConfig, PushCore, SubscriberKey, Subscription
from nacos_actors.core.registry import RegistryCore
from nacos_actors.render import lists as render
from nacos_actors.messages import (
    NO_REPLY,
    DeregisterInstance,
    Ping,
    QuerySubscribers,
    RegisterInstance,
    Subscribe,
    Watch,
    WriteBatch,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import HEART_BEAT_TIMEOUT_KEY, IP_DELETE_TIMEOUT_KEY, Instance, ServiceKey, freeze
from tests.actors.support import RecordingReply, wait_for

SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")


@pytest.fixture
def node():
    """Registry, health and push actors started and stopped in the node's order."""
    fatal: list[BaseException] = []
    core = RegistryCore()
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), core, board)
    beats = BeatLog()
    registry = RegistryActor.start(core, fatal.append, metrics)
    health = HealthCheckActor.start(HealthCore(HealthConfig()), registry, beats, metrics, fatal.append)

    def render_list(service, key, clusters_text, clusters, java_client):
        return render.list_body(service, key, clusters_text, clusters, False, java_client, 10_000, 0)

    push_core = PushCore(PushConfig(window_ms=0, ack_timeout_ms=100, max_sends=2), render_list, 1)
    push = PushActor.start(push_core, open_push_socket("127.0.0.1"), board, metrics, fatal.append)
    registry.tell(Watch(health))
    registry.tell(Watch(push))
    for actor in (registry, health, push):
        assert actor.ask(Ping(), timeout=5) == "pong"
    yield registry, push, core, board, metrics, beats
    for actor in (push, health, registry):
        actor.stop(block=True, timeout=10)
    assert fatal == []


def write(registry, *commands) -> None:
    reply = RecordingReply()
    registry.tell(WriteBatch(commands, reply))
    assert reply.done.wait(5)


def short_lived(port: int) -> Instance:
    return Instance("127.0.0.1", port, metadata=freeze({HEART_BEAT_TIMEOUT_KEY: "200", IP_DELETE_TIMEOUT_KEY: "400"}))


def test_a_silent_instance_turns_unhealthy_then_is_removed_at_its_deadlines(node):
    registry, _, core, _, metrics, _ = node
    started = time.monotonic()
    write(registry, RegisterInstance(SVC, short_lived(80)))
    key = short_lived(80).key
    assert wait_for(lambda: not core.service(SVC).instances[key].healthy)
    unhealthy_after = time.monotonic() - started
    assert wait_for(lambda: key not in core.service(SVC).instances)
    removed_after = time.monotonic() - started
    assert 0.2 <= unhealthy_after < 0.7
    assert 0.4 <= removed_after < 0.9
    samples = {
        s.labels["transition"]: s.value
        for family in metrics.registry.collect()
        if family.name == "nacos_actors_health_transitions"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert samples["unhealthy"] == 1 and samples["removed"] == 1


def test_recorded_beats_keep_an_instance_healthy(node):
    registry, _, core, _, _, beats = node
    write(registry, RegisterInstance(SVC, short_lived(81)))
    key = short_lived(81).key
    until = time.monotonic() + 0.8
    while time.monotonic() < until:
        beats.record(SVC, key, time.time_ns() // 1_000_000)
        time.sleep(0.05)
        assert core.service(SVC).instances[key].healthy
    assert wait_for(lambda: key not in core.service(SVC).instances)


@pytest.fixture
def subscriber():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def receive(sock: socket.socket) -> tuple[dict, tuple[str, int]]:
    payload, source = sock.recvfrom(65536)
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
    return json.loads(payload), source


def subscribe(push, sock: socket.socket) -> SubscriberKey:
    key = SubscriberKey(SVC, "", "127.0.0.1", sock.getsockname()[1])
    push.tell(Subscribe(Subscription(key, (), "Nacos-Java-Client:v1.4.8", "", True)))
    return key


def test_every_change_is_pushed_and_acks_are_counted(node, subscriber):
    registry, push, _, board, _, _ = node
    subscribe(push, subscriber)
    write(registry, RegisterInstance(SVC, Instance("127.0.0.1", 90)))
    packet, source = receive(subscriber)
    assert packet["type"] == "dom"
    assert [h["port"] for h in json.loads(packet["data"])["hosts"]] == [90]
    subscriber.sendto(json.dumps({"type": "push-ack", "lastRefTime": packet["lastRefTime"], "data": ""}).encode(), source)
    assert wait_for(lambda: board.stats.acked == 1)  # else the next push supersedes this one
    write(registry, DeregisterInstance(SVC, Instance("127.0.0.1", 90).key))
    packet, source = receive(subscriber)
    assert json.loads(packet["data"])["hosts"] == []
    subscriber.sendto(json.dumps({"type": "push-ack", "lastRefTime": str(packet["lastRefTime"])}).encode(), source)
    subscriber.sendto(b"not json", source)
    assert wait_for(lambda: board.stats.acked == 2 and board.stats.malformed == 1), board.stats
    assert board.stats.total == 2 and board.stats.failed == 0


def test_an_unacked_push_is_resent_then_failed_without_holding_up_others(node, subscriber):
    registry, push, _, board, _, _ = node
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(5)
    try:
        subscribe(push, silent)
        subscribe(push, subscriber)
        write(registry, RegisterInstance(SVC, Instance("127.0.0.1", 91)))
        packet, source = receive(subscriber)
        subscriber.sendto(json.dumps({"type": "push-ack", "lastRefTime": packet["lastRefTime"]}).encode(), source)
        first, _ = receive(silent)
        again, _ = receive(silent)  # the resend, after the 100 ms ack timeout
        assert first == again
        assert wait_for(lambda: board.stats.failed == 1)
        assert board.stats.acked == 1
    finally:
        silent.close()


def test_subscribers_are_answered_through_a_reply(node, subscriber):
    _, push, _, _, _, _ = node
    key = subscribe(push, subscriber)
    reply = RecordingReply()
    push.tell(QuerySubscribers("public", reply))
    assert reply.done.wait(5)
    (subscriptions,) = reply.value
    assert reply.error is None
    assert [s.key for s in subscriptions] == [key]


def test_health_verdicts_travel_without_a_reply():
    assert NO_REPLY.resolve(1) is None and NO_REPLY.fail(ValueError()) is None
