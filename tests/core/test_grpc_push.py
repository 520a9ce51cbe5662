"""The gRPC push core with integer time: subscriptions, immediate pushes, one render per shape,
answers, resends with new ids, give-ups, supersede, bounds, closed connections."""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.grpc_push import (
    FAILED_ANSWER,
    NO_ANSWER,
    NOTIFY_SUBSCRIBER,
    QUEUE_FULL,
    GrpcPushConfig,
    GrpcPushCore,
    parse_request_id,
)
from nacos_actors.core.push import GrpcSubscriberKey, PushStats
from nacos_actors.core.streams import GrpcSubscription
from nacos_actors.model import Instance, Service, ServiceKey, in_order, instance_map
from nacos_actors.render.grpc import service_info
from nacos_actors.render.lists import RenderedInstances

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@orders")
OTHER = ServiceKey("dev", "shop@@users")


class CountingRenderer:
    """A serviceInfo renderer that records each call (service name, clusters text)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, service, key, clusters_text, clusters, now_ms) -> bytes:
        self.calls.append((key.name, clusters_text))
        hosts = [] if service is None else [{"ip": i.ip, "port": i.port} for i in in_order(service.instances.values())]
        return json.dumps({"clusters": clusters_text, "hosts": hosts, "lastRefTime": now_ms}).encode()


def snapshot(*ports: int, key: ServiceKey = SERVICE, modified_ms: int = 1) -> Service:
    instances = instance_map(Instance("127.0.0.1", p) for p in ports)
    return Service(key=key, instances=instances, revision=1, modified_ms=modified_ms)


def subscription(connection: str = "c1", service: ServiceKey = SERVICE, clusters: str = "") -> GrpcSubscription:
    names = tuple(sorted(set(filter(None, clusters.split(",")))))
    return GrpcSubscription(connection, service, clusters, names, "127.0.0.9", "Nacos-Python-Client:v3.2.0", "shop")


def core(renderer=None, **config) -> GrpcPushCore:
    config.setdefault("window_ms", 0)
    return GrpcPushCore(GrpcPushConfig(**config), renderer or CountingRenderer())


def body(push) -> dict:
    return json.loads(push.body)


def answer(push_core: GrpcPushCore, push, ok: bool = True, now_ms: int = 0):
    return push_core.answered(push.connection_id, body(push)["requestId"], ok, now_ms)


def test_a_subscription_gets_the_current_state_at_once():
    push = core()
    effects = push.subscribe(subscription(clusters="B,A"), snapshot(80, 81), 10)
    (sent,) = effects.pushes
    assert sent.connection_id == "c1" and sent.type == NOTIFY_SUBSCRIBER == "NotifySubscriberRequest"
    assert body(sent) == {
        "headers": {},
        "requestId": "1",
        "namespace": "public",
        "serviceName": "orders",
        "groupName": "DEFAULT_GROUP",
        "serviceInfo": {
            "clusters": "B,A",
            "hosts": [{"ip": "127.0.0.1", "port": 80}, {"ip": "127.0.0.1", "port": 81}],
            "lastRefTime": 10,
        },
        "module": "naming",
    }
    assert effects.first_sends == 1 and effects.delays_ns == []  # no change caused it
    assert push.record(effects).subscribers == 1


def test_a_missing_service_is_pushed_empty_and_a_subscriber_of_another_group_gets_its_names():
    push = core()
    (sent,) = push.subscribe(subscription(service=OTHER), None, 10).pushes
    document = body(sent)
    assert (document["namespace"], document["serviceName"], document["groupName"]) == ("dev", "users", "shop")
    assert document["serviceInfo"]["hosts"] == []


def test_a_change_renders_once_per_clusters_text_and_pushes_once_per_subscriber():
    renderer = CountingRenderer()
    push = core(renderer)
    for connection in ("c1", "c2", "c3"):
        push.subscribe(subscription(connection), None, 0)
    push.subscribe(subscription("c4", clusters="A"), None, 0)
    push.subscribe(subscription("c5", service=OTHER), None, 0)
    renderer.calls.clear()
    effects = push.service_changed(SERVICE, snapshot(80), 10, applied_ns=7)
    assert sorted(renderer.calls) == [(SERVICE.name, ""), (SERVICE.name, "A")]
    assert sorted(p.connection_id for p in effects.pushes) == ["c1", "c2", "c3", "c4"]
    assert effects.first_sends == 4 and effects.delays_ns == [7] * 4
    documents = {p.connection_id: body(p) for p in effects.pushes}
    assert documents["c4"]["serviceInfo"]["clusters"] == "A"
    assert documents["c1"]["serviceInfo"] == documents["c2"]["serviceInfo"]
    assert len({d["requestId"] for d in documents.values()}) == 4
    assert all(d["requestId"].isdigit() for d in documents.values())
    assert effects.superseded == 4  # each subscriber's unanswered subscribe push


def test_the_pushed_last_ref_time_is_the_services_own_stamp():
    rendered = RenderedInstances()

    def render(service, key, clusters_text, clusters, now_ms):
        return orjson.dumps(service_info(service, key, clusters_text, clusters, False, now_ms, rendered))

    push = GrpcPushCore(GrpcPushConfig(window_ms=0), render)
    push.subscribe(subscription(clusters="DEFAULT"), None, 5)
    state = snapshot(80, modified_ms=1_234)
    (sent,) = push.service_changed(SERVICE, state, 99_999, applied_ns=0).pushes
    info = body(sent)["serviceInfo"]
    assert info["lastRefTime"] == state.last_ref_ms == 1_234
    assert info["clusters"] == "DEFAULT" and info["name"] == "orders" and info["groupName"] == "DEFAULT_GROUP"
    assert [h["port"] for h in info["hosts"]] == [80]


def test_an_answer_acks_the_push_and_costs_its_round_trip():
    push = core()
    (sent,) = push.subscribe(subscription(), snapshot(80), 100).pushes
    effects = answer(push, sent, now_ms=130)
    assert effects.acked_costs_ms == [30]
    stats = push.record(effects)
    assert (stats.acked, stats.awaiting_ack, stats.cost_max_ms) == (1, 0, 30)
    assert answer(push, sent, now_ms=140).unmatched == 1  # answered once only
    assert push.answered("c2", body(sent)["requestId"], True, 140).unmatched == 1  # another connection
    assert push.answered("c1", "not-a-number", True, 140).unmatched == 1


def test_a_failed_answer_resends_at_once_with_a_new_id_and_the_old_id_matches_nothing():
    push = core(max_sends=3)
    (sent,) = push.subscribe(subscription(), snapshot(80), 0).pushes
    effects = answer(push, sent, ok=False, now_ms=5)
    (again,) = effects.pushes
    assert effects.resends == 1 and effects.failed == []
    assert body(again)["requestId"] != body(sent)["requestId"]
    assert body(again)["serviceInfo"] == body(sent)["serviceInfo"]
    assert answer(push, sent, now_ms=6).unmatched == 1
    assert answer(push, again, now_ms=9).acked_costs_ms == [9]  # from the first send


def test_an_unanswered_push_is_resent_after_the_timeout_then_given_up():
    push = core(ack_timeout_ms=100, max_sends=2)
    (sent,) = push.subscribe(subscription(), snapshot(80), 0).pushes
    assert push.next_deadline() == 100
    assert push.due(99).pushes == []
    effects = push.due(100)
    (again,) = effects.pushes
    assert effects.resends == 1 and body(again)["requestId"] != body(sent)["requestId"]
    effects = push.due(200)
    assert effects.pushes == [] and effects.failed == [GrpcSubscriberKey("c1", SERVICE, "")]
    (report,) = effects.give_ups
    assert report.reasons == ((NO_ANSWER, 1),) and report.sends == 2 and report.since_ms is None
    stats = push.record(effects)
    assert (stats.failed, stats.awaiting_ack) == (1, 0)


def test_a_failed_answer_on_the_last_send_gives_up():
    push = core(max_sends=1)
    (sent,) = push.subscribe(subscription(), snapshot(80), 0).pushes
    effects = answer(push, sent, ok=False)
    assert effects.pushes == [] and len(effects.failed) == 1
    assert effects.give_ups[0].reasons == ((FAILED_ANSWER, 1),)


def test_give_ups_after_the_first_are_summed_up_once_per_interval():
    push = core(max_sends=1, give_up_log_interval_ms=1_000)
    pushes = [push.subscribe(subscription(f"c{i}"), None, 0).pushes[0] for i in range(3)]
    assert len(answer(push, pushes[0], ok=False, now_ms=10).give_ups) == 1
    assert answer(push, pushes[1], ok=False, now_ms=20).give_ups == []
    assert answer(push, pushes[2], ok=False, now_ms=30).give_ups == []
    (summary,) = push.due(1_010).give_ups
    assert summary.count == 2 and summary.since_ms == 10 and summary.reasons == ((FAILED_ANSWER, 2),)


def test_a_newer_state_supersedes_the_pending_push():
    push = core()
    (first,) = push.subscribe(subscription(), snapshot(80), 0).pushes
    effects = push.service_changed(SERVICE, snapshot(80, 81), 5, applied_ns=0)
    (second,) = effects.pushes
    assert effects.superseded == 1
    assert answer(push, first).unmatched == 1
    assert answer(push, second, now_ms=8).acked_costs_ms == [3]
    assert push.pending_count == 0


def test_changes_within_the_window_coalesce_into_one_push_of_the_latest_state():
    renderer = CountingRenderer()
    push = core(renderer, window_ms=50)
    push.subscribe(subscription(), None, 0)
    assert len(push.service_changed(SERVICE, snapshot(80), 10, applied_ns=1).pushes) == 1
    assert push.service_changed(SERVICE, snapshot(81), 20, applied_ns=2).pushes == []
    assert push.service_changed(SERVICE, snapshot(82), 30, applied_ns=3).pushes == []
    assert push.record(push.due(59)).pending_services == 1
    effects = push.due(60)
    (sent,) = effects.pushes
    assert body(sent)["serviceInfo"]["hosts"] == [{"ip": "127.0.0.1", "port": 82}]
    assert effects.delays_ns == [2]  # from the first change it carries


def test_subscriptions_are_bounded_per_connection_per_service_and_in_all():
    push = core(max_subscribers_per_connection=2, max_subscribers_per_service=3, max_subscribers=4)
    assert push.subscribe(subscription("c1", clusters="A"), None, 0).refused == []
    assert push.subscribe(subscription("c1", clusters="B"), None, 0).refused == []
    assert push.subscribe(subscription("c1", clusters="C"), None, 0).refused == ["connection"]
    assert push.subscribe(subscription("c1", clusters="A"), None, 0).refused == []  # known: refreshed
    assert push.subscribe(subscription("c2"), None, 0).refused == []
    assert push.subscribe(subscription("c3"), None, 0).refused == ["service"]
    assert push.subscribe(subscription("c3", service=OTHER), None, 0).refused == []
    effects = push.subscribe(subscription("c4", service=OTHER), None, 0)
    assert effects.refused == ["total"] and effects.pushes == []
    assert push.record(effects).subscribers == 4


def test_pending_pushes_are_bounded_and_the_oldest_is_dropped():
    push = core(max_pending=2)
    first = push.subscribe(subscription("c1"), None, 0).pushes[0]
    push.subscribe(subscription("c2"), None, 1)
    effects = push.subscribe(subscription("c3"), None, 2)
    assert effects.dropped == 1 and effects.give_ups[0].reasons == ((QUEUE_FULL, 1),)
    assert push.pending_count == 2
    assert answer(push, first).unmatched == 1


def test_a_closed_connection_forgets_its_subscriptions_and_abandons_its_pushes():
    push = core()
    push.subscribe(subscription("c1"), None, 0)
    push.subscribe(subscription("c1", service=OTHER), None, 0)
    push.subscribe(subscription("c2"), None, 0)
    effects = push.connection_closed("c1")
    assert effects.abandoned == 2 and effects.failed == [] and effects.give_ups == []
    stats = push.record(effects)
    assert (stats.subscribers, stats.awaiting_ack, stats.failed) == (1, 1, 0)
    assert [p.connection_id for p in push.service_changed(SERVICE, None, 5, 0).pushes] == ["c2"]
    assert push.service_changed(OTHER, None, 5, 0).pushes == []
    assert push.connection_closed("c1").abandoned == 0


def test_an_unsubscription_forgets_one_subscription():
    push = core()
    push.subscribe(subscription("c1", clusters="A"), None, 0)
    push.subscribe(subscription("c1", clusters="B"), None, 0)
    effects = push.unsubscribe("c1", SERVICE, "A")
    assert effects.abandoned == 1
    assert [body(p)["serviceInfo"]["clusters"] for p in push.service_changed(SERVICE, None, 5, 0).pushes] == ["B"]
    assert [s.clusters_text for s in push.subscriptions("public")] == ["B"]
    assert push.subscriptions("dev") == []


def test_request_ids_are_decimal_and_parsed_strictly():
    assert parse_request_id("42") == 42
    for text in ("", "-1", "4.2", "١٢", "1" * 21, " 1"):
        assert parse_request_id(text) is None


def test_combined_stats_add_both_transports():
    push = core()
    stats = push.record(push.subscribe(subscription(), None, 0))
    combined = stats.combined_with(PushStats(subscribers=2, total=3, acked=1, cost_total_ms=10, cost_max_ms=10))
    assert (combined.subscribers, combined.total, combined.acked, combined.awaiting_ack) == (3, 4, 1, 1)


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.sampled_from(["c1", "c2", "c3"]), st.sampled_from(["", "A"])),
        st.tuples(st.just("change"), st.sampled_from([SERVICE, OTHER])),
        st.tuples(st.just("answer"), st.integers(0, 30), st.booleans()),
        st.tuples(st.just("close"), st.sampled_from(["c1", "c2", "c3"])),
        st.tuples(st.just("unsubscribe"), st.sampled_from(["c1", "c2"]), st.sampled_from(["", "A"])),
        st.tuples(st.just("wait"), st.integers(1, 300)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPERATIONS, st.integers(1, 4), st.integers(1, 3))
def test_pending_stays_bounded_and_every_push_ends_exactly_once(operations, max_pending, max_sends):
    push = core(max_pending=max_pending, max_sends=max_sends, ack_timeout_ms=100, window_ms=10)
    now = 0
    sent = []
    stats = push.record(push.due(0))
    for operation in operations:
        match operation:
            case ("subscribe", connection, clusters):
                service = SERVICE if clusters == "" else OTHER
                effects = push.subscribe(subscription(connection, service, clusters), None, now)
            case ("change", service):
                effects = push.service_changed(service, snapshot(80, key=service), now, applied_ns=now)
            case ("answer", index, ok):
                effects = answer(push, sent[index % len(sent)], ok, now) if sent else push.due(now)
            case ("close", connection):
                effects = push.connection_closed(connection)
            case ("unsubscribe", connection, clusters):
                effects = push.unsubscribe(connection, SERVICE if clusters == "" else OTHER, clusters)
            case ("wait", delay):
                now += delay
                effects = push.due(now)
        sent.extend(effects.pushes)
        stats = push.record(effects)
        assert stats.awaiting_ack == push.pending_count <= max_pending
        ended = stats.acked + stats.failed + stats.superseded + stats.dropped + stats.abandoned
        assert ended + stats.awaiting_ack == stats.total
        assert stats.total + stats.resent == len(sent)
    ids = [(p.connection_id, body(p)["requestId"]) for p in sent]
    assert len(ids) == len(set(ids))  # every send has its own id
