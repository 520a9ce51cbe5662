"""The push core with integer time: subscribers, coalescing, packets, acks, resends, expiry."""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.push import (
    GZIP_THRESHOLD,
    Effects,
    PushConfig,
    PushCore,
    SubscriberKey,
    Subscription,
    encode_packet,
    parse_ack,
)
from nacos_actors.model import Instance, Service, ServiceKey, in_order, instance_map

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@orders")
OTHER = ServiceKey("public", "DEFAULT_GROUP@@users")
FIRST_SEQUENCE = 1_000


def render(service, key, clusters_text, clusters, java_client, now_ms) -> bytes:
    hosts = [] if service is None else [f"{i.ip}:{i.port}" for i in in_order(service.instances.values())]
    return json.dumps({"dom": key.name, "clusters": clusters_text, "hosts": hosts, "java": java_client}).encode()


def snapshot(*ports: int, revision: int = 1, key: ServiceKey = SERVICE) -> Service:
    instances = instance_map(Instance("127.0.0.1", p) for p in ports)
    return Service(key=key, instances=instances, revision=revision)


def subscription(port: int, service: ServiceKey = SERVICE, clusters: str = "", address: str = "127.0.0.1") -> Subscription:
    return Subscription(SubscriberKey(service, clusters, address, port), tuple(filter(None, clusters.split(","))), "Nacos-Java-Client:v1.4.8", "", True)


def core(**config) -> PushCore:
    return PushCore(PushConfig(**config), render, FIRST_SEQUENCE)


def decode(payload: bytes) -> dict:
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
    return json.loads(payload)


def ack(sequence, as_string: bool = False) -> bytes:
    return json.dumps({"type": "push-ack", "lastRefTime": str(sequence) if as_string else sequence, "data": ""}).encode()


def test_a_change_is_pushed_at_once_to_every_subscriber_with_its_own_clusters():
    push = core()
    push.subscribe(subscription(5001), 0)
    push.subscribe(subscription(5002, clusters="A,B"), 0)
    push.subscribe(subscription(5003, service=OTHER), 0)
    effects = push.service_changed(SERVICE, snapshot(80), 10, applied_ns=7)
    assert sorted(d.port for d in effects.sends) == [5001, 5002]
    assert effects.first_sends == 2 and effects.delays_ns == [7, 7]
    packets = {d.port: decode(d.payload) for d in effects.sends}
    assert {p["type"] for p in packets.values()} == {"dom"}
    assert json.loads(packets[5002]["data"]) == {
        "dom": SERVICE.name,
        "clusters": "A,B",
        "hosts": ["127.0.0.1:80"],
        "java": True,
    }
    assert sorted(p["lastRefTime"] for p in packets.values()) == [FIRST_SEQUENCE, FIRST_SEQUENCE + 1]


def test_a_service_without_subscribers_costs_nothing():
    push = core()
    assert push.service_changed(SERVICE, snapshot(80), 0, 0).sends == []
    assert push.next_deadline() is None


def test_changes_within_the_window_coalesce_into_one_push_of_the_latest_state():
    push = core(window_ms=5)
    push.subscribe(subscription(5001), 0)
    first = push.service_changed(SERVICE, snapshot(80), 100, applied_ns=1)
    assert len(first.sends) == 1
    assert push.service_changed(SERVICE, snapshot(80, 81, revision=2), 101, applied_ns=2).sends == []
    assert push.service_changed(SERVICE, snapshot(80, 81, 82, revision=3), 103, applied_ns=3).sends == []
    assert push.next_deadline() == 105
    assert push.due(104).sends == []
    trailing = push.due(105)
    assert len(trailing.sends) == 1
    assert json.loads(decode(trailing.sends[0].payload)["data"])["hosts"] == ["127.0.0.1:80", "127.0.0.1:81", "127.0.0.1:82"]
    assert trailing.delays_ns == [2]  # latency counts from the earliest change it carries


def test_a_quiet_window_ends_without_a_push_and_the_next_change_goes_at_once():
    push = core(window_ms=5)
    push.subscribe(subscription(5001), 0)
    push.service_changed(SERVICE, snapshot(80), 100, 0)
    assert push.due(105).sends == []
    assert len(push.service_changed(SERVICE, snapshot(81), 106, 0).sends) == 1


def test_a_change_pushed_at_once_drops_an_older_held_back_state():
    push = core(window_ms=5)
    push.subscribe(subscription(5001), 0)
    push.service_changed(SERVICE, snapshot(80), 100, applied_ns=1)
    assert push.service_changed(SERVICE, snapshot(81, revision=2), 102, applied_ns=2).sends == []  # held back
    # The window's timer is late: a newer change arrives after the window ended, and goes at once.
    newest = push.service_changed(SERVICE, snapshot(82, revision=3), 106, applied_ns=3)
    assert json.loads(decode(newest.sends[0].payload)["data"])["hosts"] == ["127.0.0.1:82"]
    assert newest.delays_ns == [2]
    for now in range(106, 200):
        assert push.due(now).sends == [], "an older state was pushed after a newer one"


def test_a_zero_window_pushes_every_change():
    push = core(window_ms=0)
    push.subscribe(subscription(5001), 0)
    for now in range(5):
        assert len(push.service_changed(SERVICE, snapshot(80 + now), now, 0).sends) == 1


def test_a_deleted_service_is_pushed_as_an_empty_list():
    push = core()
    push.subscribe(subscription(5001), 0)
    effects = push.service_changed(SERVICE, None, 0, 0)
    assert json.loads(decode(effects.sends[0].payload)["data"])["hosts"] == []


def test_acks_match_by_address_port_and_sequence_given_as_number_or_string():
    push = core(window_ms=0)
    push.subscribe(subscription(5001), 0)
    push.subscribe(subscription(5002), 0)
    sends = push.service_changed(SERVICE, snapshot(80), 100, 0).sends
    by_port = {d.port: decode(d.payload)["lastRefTime"] for d in sends}
    assert push.receive(ack(by_port[5001]), "127.0.0.1", 5001, 103).acked_costs_ms == [3]
    assert push.receive(ack(by_port[5002], as_string=True), "127.0.0.1", 5002, 110).acked_costs_ms == [10]
    again = push.receive(ack(by_port[5002]), "127.0.0.1", 5002, 111)
    assert again.unmatched == 1 and again.acked_costs_ms == []
    wrong_source = push.receive(ack(by_port[5001]), "127.0.0.1", 5002, 111)
    assert wrong_source.unmatched == 1
    assert push.due(100_000).sends == []  # nothing left to resend


def test_an_unacked_push_is_resent_with_backoff_then_counted_failed():
    push = core(window_ms=0, ack_timeout_ms=1_000, max_sends=3)
    push.subscribe(subscription(5001), 0)
    push.subscribe(subscription(5002), 0)
    sends = push.service_changed(SERVICE, snapshot(80), 0, 0).sends
    acked = next(d for d in sends if d.port == 5002)
    push.receive(ack(decode(acked.payload)["lastRefTime"]), "127.0.0.1", 5002, 1)
    resend_times = []
    failed: list[tuple[int, SubscriberKey]] = []
    for now in range(0, 8_000, 250):
        push.subscribe(subscription(5001), now)  # still polling
        effects = push.due(now)
        if effects.sends:
            assert [d.port for d in effects.sends] == [5001]
            assert effects.sends[0].payload == next(d for d in sends if d.port == 5001).payload
            resend_times.append(now)
        failed += [(now, key) for key in effects.failed]
    assert resend_times == [1_000, 3_000]
    assert failed == [(7_000, subscription(5001).key)]


def test_a_push_to_a_subscriber_that_left_is_not_resent():
    push = core(window_ms=0, ack_timeout_ms=1_000, subscriber_ttl_ms=500)
    push.subscribe(subscription(5001), 0)
    push.service_changed(SERVICE, snapshot(80), 0, 0)
    assert push.due(501).expired == [subscription(5001).key]
    effects = push.due(1_000)
    assert effects.sends == [] and effects.failed == [subscription(5001).key]


def test_a_newer_push_supersedes_an_unacked_older_one():
    push = core(window_ms=0, ack_timeout_ms=1_000)
    push.subscribe(subscription(5001), 0)
    push.service_changed(SERVICE, snapshot(80), 0, 0)
    newer = push.service_changed(SERVICE, snapshot(81), 500, 0)
    assert newer.superseded == 1
    assert [d.payload for d in push.due(1_000).sends] == []  # the old packet is not resent
    assert len(push.due(1_500).sends) == 1  # the newer one is, on its own schedule
    stats = push.record(newer)
    assert stats.superseded == 1


def test_a_subscriber_expires_when_it_stops_polling_and_is_refreshed_by_polls():
    push = core(subscriber_ttl_ms=10_000)
    push.subscribe(subscription(5001), 0)
    push.subscribe(subscription(5002), 0)
    push.subscribe(subscription(5002), 8_000)  # a poll
    expired = push.due(10_001)
    assert expired.expired == [subscription(5001).key]
    assert [d.port for d in push.service_changed(SERVICE, snapshot(80), 10_002, 0).sends] == [5002]
    assert push.due(18_001).expired == [subscription(5002).key]
    assert push.service_changed(SERVICE, snapshot(81), 18_002, 0).sends == []
    assert push.subscriptions() == []


def test_a_lapsed_subscriber_is_skipped_even_before_its_expiry_timer_runs():
    push = core(subscriber_ttl_ms=10_000)
    push.subscribe(subscription(5001), 0)
    effects = push.service_changed(SERVICE, snapshot(80), 10_001, 0)
    assert effects.sends == [] and effects.expired == [subscription(5001).key]


def test_packets_of_1024_bytes_or_more_are_gzipped():
    small = encode_packet(b"{}", 1)
    assert small[:1] == b"{" and json.loads(small) == {"type": "dom", "data": "{}", "lastRefTime": 1}
    big_data = json.dumps({"hosts": ["x" * 40] * 40}).encode()
    big = encode_packet(big_data, 2)
    assert big[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(big))["data"] == big_data.decode()
    assert len(gzip.decompress(big)) >= GZIP_THRESHOLD


def test_a_packet_too_large_for_udp_counts_as_failed():
    def huge(service, key, clusters_text, clusters, java_client, now_ms) -> bytes:
        return json.dumps({"blob": [str(i * 7919 % 100_003) for i in range(60_000)]}).encode()

    push = PushCore(PushConfig(), huge, 1)
    push.subscribe(subscription(5001), 0)
    effects = push.service_changed(SERVICE, snapshot(80), 0, 0)
    assert effects.sends == [] and effects.oversized == [subscription(5001).key]
    stats = push.record(effects)
    assert stats.total == 1 and stats.failed == 1


@given(
    st.one_of(
        st.binary(max_size=64),
        st.just(b"[]"),
        st.just(b'{"type":"dump-ack"}'),
        st.just(b'{"type":"push-ack","lastRefTime":true}'),
        st.just(b'{"type":"push-ack","lastRefTime":-1}'),
        st.just(b'{"type":"push-ack","lastRefTime":"12a"}'),
        st.just(b'{"type":"push-ack","lastRefTime":1.5}'),
        st.just(b'{"type":"push-ack"}'),
        st.just('{"type":"push-ack","lastRefTime":"١٢"}'.encode()),
    )
)
def test_malformed_datagrams_are_counted_and_change_nothing(payload):
    push = core()
    push.subscribe(subscription(5001), 0)
    push.service_changed(SERVICE, snapshot(80), 0, 0)
    if parse_ack(payload) is not None:
        return  # random bytes that happen to be a valid ack
    effects = push.receive(payload, "127.0.0.1", 5001, 1)
    assert effects.malformed == 1 and effects.acked_costs_ms == [] and effects.sends == []


def test_stats_fold_the_effects():
    push = core(window_ms=0)
    push.subscribe(subscription(5001), 0)
    push.subscribe(subscription(5002), 0)
    changed = push.service_changed(SERVICE, snapshot(80), 0, 0)
    stats = push.record(changed)
    assert (stats.subscribers, stats.total, stats.awaiting_ack) == (2, 2, 2)
    sequence = decode(changed.sends[0].payload)["lastRefTime"]
    stats = push.record(push.receive(ack(sequence), "127.0.0.1", changed.sends[0].port, 4))
    assert (stats.acked, stats.cost_max_ms, stats.average_cost_ms, stats.awaiting_ack) == (1, 4, 4.0, 1)
    stats = push.record(push.receive(b"junk", "127.0.0.1", 1, 5))
    assert stats.malformed == 1


# -- invariants over any sequence of polls, changes, acks and time ------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("poll"), st.integers(1, 3), st.sampled_from(["", "A"])),
        st.tuples(st.just("change"), st.sampled_from([SERVICE, OTHER])),
        st.tuples(st.just("ack"), st.integers(0, 5)),
        st.tuples(st.just("wait"), st.integers(1, 4_000)),
    ),
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(operations, st.integers(0, 10), st.integers(1, 4))
def test_every_push_ends_once_and_no_subscriber_hears_after_expiry(ops, window, max_sends):
    push = core(window_ms=window, subscriber_ttl_ms=5_000, ack_timeout_ms=300, max_sends=max_sends)
    now = 0
    last_poll: dict[SubscriberKey, int] = {}
    in_flight: list[tuple[str, int, int]] = []
    sends_per_packet: dict[bytes, int] = {}
    total = Effects()

    def take(effects: Effects) -> None:
        push.record(effects)
        for datagram in effects.sends:
            # several subscribers (service, clusters) may share one address: one of them must be live
            polled = max(t for k, t in last_poll.items() if (k.address, k.port) == (datagram.address, datagram.port))
            assert now - polled <= 5_000, "pushed to an expired subscriber"
            sends_per_packet[datagram.payload] = sends_per_packet.get(datagram.payload, 0) + 1
            assert sends_per_packet[datagram.payload] <= max_sends
            in_flight.append((datagram.address, datagram.port, decode(datagram.payload)["lastRefTime"]))
        total.first_sends += effects.first_sends
        total.acked_costs_ms += effects.acked_costs_ms
        total.failed += effects.failed + effects.oversized
        total.superseded += effects.superseded

    revision = 0
    for op in ops:
        if op[0] == "poll":
            sub = subscription(5000 + op[1], service=SERVICE if op[1] != 3 else OTHER, clusters=op[2])
            last_poll[sub.key] = now
            take(push.subscribe(sub, now))
        elif op[0] == "change":
            revision += 1
            take(push.service_changed(op[1], snapshot(revision, key=op[1]), now, 0))
        elif op[0] == "ack" and in_flight:
            address, port, sequence = in_flight[op[1] % len(in_flight)]
            take(push.receive(ack(sequence), address, port, now))
        elif op[0] == "wait":
            target = now + op[1]
            while (deadline := push.next_deadline()) is not None and deadline <= target:
                now = max(now, deadline)
                take(push.due(now))
            now = target
    while (deadline := push.next_deadline()) is not None:
        now = max(now, deadline)
        take(push.due(now))
    stats = push.record(Effects())
    assert stats.awaiting_ack == 0
    assert total.first_sends == len(total.acked_costs_ms) + len(total.failed) + total.superseded
    assert stats.total == stats.acked + stats.failed + stats.superseded
