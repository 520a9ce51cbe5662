"""The push core with integer time: subscribers, coalescing, packets, acks, resends, expiry."""

from __future__ import annotations

import gzip
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nacos_actors.core.push import (
    GZIP_THRESHOLD,
    LEFT,
    MAX_ACK_BYTES,
    NO_ACK,
    TOO_LARGE,
    Effects,
    PushConfig,
    PushCore,
    ReceiveGate,
    Refusing,
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


# -- limits: issue 14, finding 6 -----------------------------------------------------------------


def counting_render():
    calls = []

    def rendered(service, key, clusters_text, clusters, java_client, now_ms) -> bytes:
        calls.append((key, clusters_text, java_client))
        return render(service, key, clusters_text, clusters, java_client, now_ms)

    return rendered, calls


def test_subscribers_of_one_shape_share_one_packet_rendered_and_compressed_once():
    rendered, calls = counting_render()
    push = PushCore(PushConfig(window_ms=0), rendered, FIRST_SEQUENCE)
    for port in range(5001, 5101):
        push.subscribe(subscription(port), 0)
    push.subscribe(subscription(6001, clusters="A"), 0)
    effects = push.service_changed(SERVICE, snapshot(*range(80, 200)), 10, applied_ns=1)
    assert len(effects.sends) == 101 and effects.first_sends == 101
    assert len(calls) == 2  # one render per shape, not per subscriber
    payloads = {id(d.payload) for d in effects.sends if d.port != 6001}
    assert len(payloads) == 1  # the very same bytes, encoded (and gzipped) once
    assert effects.sends[0].payload[:2] == b"\x1f\x8b"
    sequences = {decode(d.payload)["lastRefTime"] for d in effects.sends}
    assert sequences == {FIRST_SEQUENCE, FIRST_SEQUENCE + 1}


def test_a_shared_packet_is_acked_by_each_subscriber_from_its_own_address_and_port():
    push = core(window_ms=0, ack_timeout_ms=1_000, max_sends=2)
    for port in (5001, 5002, 5003):
        push.subscribe(subscription(port), 0)
    sends = push.service_changed(SERVICE, snapshot(80), 0, 0).sends
    (sequence,) = {decode(d.payload)["lastRefTime"] for d in sends}
    assert push.receive(ack(sequence), "127.0.0.1", 5001, 5).acked_costs_ms == [5]
    assert push.receive(ack(sequence), "127.0.0.1", 5001, 6).unmatched == 1  # once only
    assert push.receive(ack(sequence), "127.0.0.9", 5002, 6).unmatched == 1  # from elsewhere
    assert push.receive(ack(sequence, as_string=True), "127.0.0.1", 5002, 7).acked_costs_ms == [7]
    resent = push.due(1_000)
    assert [d.port for d in resent.sends] == [5003] and resent.resends == 1
    assert push.due(3_000).failed == [subscription(5003).key]
    assert push.record(Effects()).awaiting_ack == 0


def test_subscribers_from_one_address_are_bounded_and_the_rest_keep_polling():
    push = core(window_ms=0, max_subscribers_per_address=3)
    for port in (5001, 5002, 5003):
        assert push.subscribe(subscription(port), 0).refused == []
    refused = push.subscribe(subscription(5004), 0)
    assert refused.refused == ["address"]
    assert push.subscribe(subscription(5004, clusters="A"), 0).refused == ["address"]  # another spelling
    assert push.subscribe(subscription(5001), 10).refused == []  # a known one refreshes
    assert push.subscribe(subscription(5005, address="127.0.0.2"), 0).refused == []  # another address
    assert push.refusing() == Refusing(frozenset({"127.0.0.1"}), frozenset(), False)
    assert push.refusing().refuses("127.0.0.1", SERVICE) and not push.refusing().refuses("127.0.0.2", SERVICE)
    effects = push.service_changed(SERVICE, snapshot(80), 20, 0)
    assert sorted((d.address, d.port) for d in effects.sends) == [
        ("127.0.0.1", 5001), ("127.0.0.1", 5002), ("127.0.0.1", 5003), ("127.0.0.2", 5005)
    ]
    assert push.record(refused).refused == 1
    assert len(push.subscriptions()) == 4


def test_a_slot_freed_by_an_expired_subscriber_takes_a_new_one():
    push = core(subscriber_ttl_ms=1_000, max_subscribers_per_address=1)
    push.subscribe(subscription(5001), 0)
    assert push.subscribe(subscription(5002), 500).refused == ["address"]
    expired = push.due(1_001)
    assert expired.expired == [subscription(5001).key] and expired.refusing_changed
    assert push.refusing() == Refusing()
    assert push.subscribe(subscription(5002), 1_002).refused == []


def test_subscribers_of_one_service_and_in_all_are_bounded():
    push = core(max_subscribers_per_service=2, max_subscribers=3)
    assert push.subscribe(subscription(5001), 0).refused == []
    added = push.subscribe(subscription(5002, address="127.0.0.2"), 0)
    assert added.refused == [] and added.refusing_changed
    assert push.subscribe(subscription(5003, address="127.0.0.3"), 0).refused == ["service"]
    assert push.refusing().services == frozenset({SERVICE})
    assert push.subscribe(subscription(5003, service=OTHER, address="127.0.0.3"), 0).refused == []
    assert push.refusing().full
    assert push.subscribe(subscription(5004, service=OTHER, address="127.0.0.4"), 0).refused == ["total"]


def test_one_change_sends_at_most_the_address_limit_times_max_sends_datagrams_to_one_address():
    # The amplification of the finding: one register made 15,000 datagrams to the requester's own
    # address (5,000 subscriptions, 3 sends each). Now the subscriptions stop at the limit.
    push = core(window_ms=0, ack_timeout_ms=1_000, max_sends=3, max_subscribers_per_address=16)
    for port in range(20_000, 25_000):
        push.subscribe(subscription(port), 0)
    sent = list(push.service_changed(SERVICE, snapshot(80), 0, 0).sends)
    now = 0
    while (deadline := push.next_deadline()) is not None and deadline <= 8_000:
        now = deadline
        sent += push.due(now).sends
    assert len(sent) == 16 * 3
    assert push.record(Effects()).subscribers == 16


def test_pushes_awaiting_their_ack_are_bounded_and_the_oldest_are_dropped_first():
    push = core(window_ms=0, ack_timeout_ms=1_000, max_sends=3, max_pending=4)
    for port in (5001, 5002, 5003):
        push.subscribe(subscription(port), 0)
        push.subscribe(subscription(port, service=OTHER), 0)
    first = push.service_changed(SERVICE, snapshot(80), 0, 0)
    assert (len(first.sends), first.dropped) == (3, 0)
    second = push.service_changed(OTHER, snapshot(81, key=OTHER), 100, 0)
    assert len(second.sends) == 3  # every subscriber still gets the first send
    assert second.dropped == 2  # two of the older packet's subscribers are no longer awaited
    stats = push.record(second)
    assert stats.awaiting_ack == 4 and stats.dropped == 2
    resent = push.due(1_000)
    assert len(resent.sends) == 1  # what is left of the older packet
    assert len(push.due(1_100).sends) == 3


def test_a_newer_packet_for_a_subscriber_replaces_its_unacked_one_in_the_queue():
    push = core(window_ms=0, ack_timeout_ms=1_000, max_pending=1)
    push.subscribe(subscription(5001), 0)
    for now in range(0, 50, 10):
        effects = push.service_changed(SERVICE, snapshot(80 + now), now, 0)
        assert effects.dropped == 0
    stats = push.record(Effects())
    assert stats.awaiting_ack == 1


def test_give_ups_are_reported_once_at_once_then_summed_up_once_per_interval():
    push = core(window_ms=0, ack_timeout_ms=100, max_sends=1, give_up_log_interval_ms=60_000)
    for port in range(5001, 5101):
        push.subscribe(subscription(port), 0)
    push.service_changed(SERVICE, snapshot(80), 0, 0)
    failed = push.due(100)
    assert len(failed.failed) == 100
    assert [(r.count, r.reasons, r.since_ms) for r in failed.give_ups] == [(1, (("no ack", 1),), None)]
    given_up = len(failed.failed) - 1
    for now in range(1_000, 59_000, 1_000):  # more give-ups within the interval: no report yet
        push.subscribe(subscription(5001), now)
        push.service_changed(SERVICE, snapshot(80 + now), now, 0)
        effects = push.due(now + 100)
        given_up += len(effects.failed)
        assert effects.give_ups == []
    summary = push.due(60_100)
    assert given_up > 99
    assert [(r.count, r.since_ms) for r in summary.give_ups] == [(given_up, 100)]
    assert sum(count for _, count in summary.give_ups[0].reasons) == given_up
    assert dict(summary.give_ups[0].reasons).keys() <= {NO_ACK, LEFT}
    assert push.due(120_100).give_ups == []  # a quiet interval: nothing to sum up
    push.subscribe(subscription(5001), 130_000)
    push.service_changed(SERVICE, snapshot(1), 130_000, 0)
    again = push.due(130_100)
    assert [(r.count, r.since_ms) for r in again.give_ups] == [(1, None)]  # the next one at once


def test_give_up_reasons_are_told_apart():
    def huge(service, key, clusters_text, clusters, java_client, now_ms) -> bytes:
        return json.dumps({"blob": [str(i * 7919 % 100_003) for i in range(60_000)]}).encode()

    push = PushCore(PushConfig(window_ms=0, give_up_log_interval_ms=1_000), huge, 1)
    push.subscribe(subscription(5001), 0)
    push.subscribe(subscription(5002), 0)
    effects = push.service_changed(SERVICE, snapshot(80), 0, 0)
    assert [r.reasons for r in effects.give_ups] == [((TOO_LARGE, 1),)]
    summary = push.due(1_000)
    assert [r.reasons for r in summary.give_ups] == [((TOO_LARGE, 1),)]


def test_acks_are_no_larger_than_max_ack_bytes():
    padded = json.dumps({"type": "push-ack", "lastRefTime": 7, "data": "x" * MAX_ACK_BYTES}).encode()
    assert parse_ack(padded) is None
    assert parse_ack(ack(7)) == 7


def test_the_receive_gate_drops_oversized_datagrams_and_bounds_those_in_flight():
    gate = ReceiveGate(max_in_flight=2)
    assert gate.admit(60_000) == "oversized" and gate.in_flight == 0
    assert [gate.admit(60) for _ in range(3)] == ["ok", "ok", "overflow"]
    gate.handled(1)
    assert gate.admit(MAX_ACK_BYTES) == "ok"
    assert gate.admit(MAX_ACK_BYTES + 1) == "oversized"
    gate.handled(5)
    assert gate.in_flight == 0


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


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(0, 10), st.integers(1, 4), st.integers(1, 6), st.integers(1, 4))
# One push, two shapes, a bound of one: the first shape's packet loses its only subscriber to the
# bound, and the push must not hand that forgotten packet to the next subscriber of its shape.
@example([("poll", 1, ""), ("poll", 1, "A"), ("poll", 2, ""), ("change", SERVICE)], 0, 1, 1, 4)
def test_every_push_ends_once_and_no_subscriber_hears_after_expiry(ops, window, max_sends, max_pending, per_address):
    push = core(
        window_ms=window,
        subscriber_ttl_ms=5_000,
        ack_timeout_ms=300,
        max_sends=max_sends,
        max_pending=max_pending,
        max_subscribers_per_address=per_address,
    )
    now = 0
    last_poll: dict[SubscriberKey, int] = {}
    in_flight: list[tuple[str, int, int]] = []
    sends_per_packet: dict[tuple[str, int, bytes], int] = {}
    total = Effects()

    def take(effects: Effects) -> None:
        push.record(effects)
        for datagram in effects.sends:
            # several subscribers (service, clusters) may share one address: one of them must be live
            polled = max(t for k, t in last_poll.items() if (k.address, k.port) == (datagram.address, datagram.port))
            assert now - polled <= 5_000, "pushed to an expired subscriber"
            sent = (datagram.address, datagram.port, datagram.payload)
            sends_per_packet[sent] = sends_per_packet.get(sent, 0) + 1
            assert sends_per_packet[sent] <= max_sends
            in_flight.append((datagram.address, datagram.port, decode(datagram.payload)["lastRefTime"]))
        assert push.record(Effects()).awaiting_ack <= max_pending
        total.first_sends += effects.first_sends
        total.acked_costs_ms += effects.acked_costs_ms
        total.failed += effects.failed + effects.oversized
        total.superseded += effects.superseded
        total.dropped += effects.dropped
        total.refused += effects.refused

    revision = 0
    for op in ops:
        if op[0] == "poll":
            sub = subscription(5000 + op[1], service=SERVICE if op[1] != 3 else OTHER, clusters=op[2])
            effects = push.subscribe(sub, now)
            if not effects.refused:
                last_poll[sub.key] = now
            take(effects)
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
    assert total.first_sends == len(total.acked_costs_ms) + len(total.failed) + total.superseded + total.dropped
    assert stats.total == stats.acked + stats.failed + stats.superseded + stats.dropped
    assert stats.refused == len(total.refused)
    assert stats.subscribers == 0
