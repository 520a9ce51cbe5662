"""The health and push drivers in a node's real actors, started by the node's own lifecycle
(node.async_start_node) on a loop of their own: ticks, the push socket and acks all real."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from prometheus_client import CollectorRegistry

from nacos_actors.beats import BeatLog
from nacos_actors.core.push import PushBoard, SubscriberKey, Subscription
from nacos_actors.core.registry import RegistryCore, RegistryView
from nacos_actors.http.front import Front
from nacos_actors.messages import (
    NO_REPLY,
    PUSH,
    REGISTRY,
    DeregisterInstance,
    QuerySubscribers,
    RegisterInstance,
    Subscribe,
    WriteBatch,
)
from nacos_actors.metrics import NodeMetrics
from nacos_actors.model import HEART_BEAT_TIMEOUT_KEY, IP_DELETE_TIMEOUT_KEY, Instance, ServiceKey, freeze
from nacos_actors.node import async_start_node
from nacos_actors.settings import Settings
from tests.drivers.support import RecordingReply, wait_for
from tests.raft.helpers import free_port

SVC = ServiceKey("public", "DEFAULT_GROUP@@demo")


@dataclass
class Node:
    front: Front
    core: RegistryCore
    board: PushBoard
    metrics: NodeMetrics
    beats: BeatLog

    def actor(self, name: Any) -> pykka.ActorRef[Any]:
        ref = self.front.bridge.actors.get(name)
        assert ref is not None
        return ref


@pytest.fixture
def node():
    """A standalone node's actors (registry, health, push) on a loop in a thread of its own."""
    fatal: list[BaseException] = []
    # Its own Raft port: the default (8848 - 1000) may be any other node's on this host.
    settings = Settings(push_window_ms=0, push_ack_timeout_ms=100, push_max_sends=2, grpc_port=0, raft_port=free_port())
    core = RegistryCore()
    board = PushBoard()
    metrics = NodeMetrics(CollectorRegistry(), RegistryView(core), board)
    beats = BeatLog()
    started: list[tuple[str, pykka.ActorRef[Any]]] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-node-loop", daemon=True)
    thread.start()
    start = async_start_node(settings, core, metrics, beats, board, fatal.append, started)
    front = asyncio.run_coroutine_threadsafe(start, loop).result(10)
    yield Node(front, core, board, metrics, beats)
    asyncio.run_coroutine_threadsafe(front.async_close(), loop).result(10)
    for _, actor in reversed(started):
        actor.stop(block=True, timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    assert fatal == []


def write(node: Node, *commands) -> None:
    reply = RecordingReply()
    node.actor(REGISTRY).tell(WriteBatch(commands, reply))
    assert reply.done.wait(5)


def short_lived(port: int) -> Instance:
    return Instance("127.0.0.1", port, metadata=freeze({HEART_BEAT_TIMEOUT_KEY: "200", IP_DELETE_TIMEOUT_KEY: "400"}))


def test_a_silent_instance_turns_unhealthy_then_is_removed_at_its_deadlines(node):
    core, metrics = node.core, node.metrics
    started = time.monotonic()
    write(node, RegisterInstance(SVC, short_lived(80)))
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
    core, beats = node.core, node.beats
    write(node, RegisterInstance(SVC, short_lived(81)))
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


def subscribe(node: Node, sock: socket.socket) -> SubscriberKey:
    key = SubscriberKey(SVC, "", "127.0.0.1", sock.getsockname()[1])
    node.actor(PUSH).tell(Subscribe(Subscription(key, (), "Nacos-Java-Client:v1.4.8", "", True)))
    return key


def test_every_change_is_pushed_and_acks_are_counted(node, subscriber):
    board = node.board
    subscribe(node, subscriber)
    write(node, RegisterInstance(SVC, Instance("127.0.0.1", 90)))
    packet, source = receive(subscriber)
    assert packet["type"] == "dom"
    assert [h["port"] for h in json.loads(packet["data"])["hosts"]] == [90]
    subscriber.sendto(json.dumps({"type": "push-ack", "lastRefTime": packet["lastRefTime"], "data": ""}).encode(), source)
    assert wait_for(lambda: board.stats.acked == 1)  # else the next push supersedes this one
    write(node, DeregisterInstance(SVC, Instance("127.0.0.1", 90).key))
    packet, source = receive(subscriber)
    assert json.loads(packet["data"])["hosts"] == []
    subscriber.sendto(json.dumps({"type": "push-ack", "lastRefTime": str(packet["lastRefTime"])}).encode(), source)
    subscriber.sendto(b"not json", source)
    assert wait_for(lambda: board.stats.acked == 2 and board.stats.malformed == 1), board.stats
    assert board.stats.total == 2 and board.stats.failed == 0


def test_an_unacked_push_is_resent_then_failed_without_holding_up_others(node, subscriber):
    board = node.board
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.settimeout(5)
    try:
        subscribe(node, silent)
        subscribe(node, subscriber)
        write(node, RegisterInstance(SVC, Instance("127.0.0.1", 91)))
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
    key = subscribe(node, subscriber)
    reply = RecordingReply()
    node.actor(PUSH).tell(QuerySubscribers("public", reply))
    assert reply.done.wait(5)
    subscriptions = reply.value
    assert reply.error is None
    assert [s.key for s in subscriptions] == [key]


def test_health_verdicts_travel_without_a_reply():
    assert NO_REPLY.resolve(1) is None and NO_REPLY.fail(ValueError()) is None
