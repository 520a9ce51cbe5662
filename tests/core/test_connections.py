"""The gRPC connection table (nacos_actors.core.connections): setup, bounds, detection and
eviction, and who owns which instance (takeover, batch replace), in pure time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.connections import (
    ALREADY_SET_UP,
    CLIENT_DETECTION_REQUEST,
    ENDED,
    EVICTED_NO_SETUP,
    EVICTED_SILENT,
    OPEN,
    UNKNOWN,
    ConnectionConfig,
    ConnectionTable,
)
from nacos_actors.model import Instance, ServiceKey

SERVICE = ServiceKey("public", "DEFAULT_GROUP@@svc")
OTHER = ServiceKey("public", "DEFAULT_GROUP@@other")
CONFIG = ConnectionConfig(
    max_connections=3, max_instances=4, max_subscriptions=2, detect_idle_ms=1000, detect_timeout_ms=300
)


def table(config: ConnectionConfig = CONFIG) -> ConnectionTable:
    return ConnectionTable(config)


def connect(t: ConnectionTable, connection_id: str, now: int = 0) -> int:
    generation = t.opened(connection_id, "127.0.0.1", 5000, now)
    assert generation is not None
    assert t.set_up(connection_id, "Nacos-Python-Client:v3.2.0", "public", {"source": "sdk"}, "10.0.0.1", now) == OPEN
    return generation


def instance(port: int, ip: str = "127.0.0.1") -> Instance:
    return Instance(ip, port)


def test_a_connection_is_set_up_by_its_setup_request_only():
    t = table()
    assert t.opened("a", "127.0.0.1", 5000, 0) is not None
    assert not t.active("a", 1)  # a unary call before setup: 301
    assert t.set_up("a", "v", "public", {}, "", 2) == OPEN
    assert t.active("a", 3)
    assert t.set_up("a", "w", "public", {}, "", 4) == ALREADY_SET_UP
    assert t.client_version("a") == "v"
    assert t.client_ip("a") == "127.0.0.1"  # no clientIp given: the peer address
    assert t.set_up("nobody", "v", "public", {}, "", 5) == UNKNOWN


def test_connections_past_the_limit_are_refused():
    t = table()
    for name in "abc":
        connect(t, name)
    assert t.opened("d", "127.0.0.1", 1, 0) is None
    assert t.opened("a", "127.0.0.1", 1, 0) is not None  # a second stream on a live one replaces it


def test_a_silent_connection_is_asked_then_evicted_with_what_it_owns():
    t = table()
    connect(t, "a")
    t.registered("a", SERVICE, instance(1), 0)
    effects = t.due(1000)
    detections = [p for p in effects.pushes if p.type == CLIENT_DETECTION_REQUEST]
    assert len(detections) == 1 and detections[0].connection_id == "a"
    assert b'"headers":{}' in detections[0].body
    assert t.due(1299).closed == ()
    evicted = t.due(1300).closed
    assert [(c.connection_id, c.reason) for c in evicted] == [("a", EVICTED_SILENT)]
    assert evicted[0].instances == ((SERVICE, instance(1)),)
    assert "a" not in t


def test_an_answered_detection_keeps_the_connection():
    t = table()
    connect(t, "a")
    push = t.due(1000).pushes[0]
    request_id = push.body.split(b'"requestId":"')[1].split(b'"')[0].decode()
    t.answered_detection("a", request_id, True, 1100)
    assert t.due(1400).closed == ()
    assert "a" in t
    # silent again: asked again one idle period after its answer
    assert [p.type for p in t.due(2100).pushes] == [CLIENT_DETECTION_REQUEST]


def test_a_failed_answer_does_not_count():
    t = table()
    connect(t, "a")
    push = t.due(1000).pushes[0]
    request_id = push.body.split(b'"requestId":"')[1].split(b'"')[0].decode()
    t.answered_detection("a", request_id, False, 1100)
    assert [c.reason for c in t.due(1300).closed] == [EVICTED_SILENT]


def test_activity_postpones_detection():
    t = table()
    connect(t, "a")
    t.active("a", 900)
    assert t.due(1000).pushes == ()
    assert [p.type for p in t.due(1900).pushes] == [CLIENT_DETECTION_REQUEST]


def test_a_stream_without_setup_is_evicted():
    t = table()
    t.opened("a", "127.0.0.1", 1, 0)
    assert [c.reason for c in t.due(1000).closed] == [EVICTED_NO_SETUP]


def test_the_end_of_a_replaced_stream_closes_nothing():
    t = table()
    first = connect(t, "a")
    second = t.opened("a", "127.0.0.1", 5000, 10)
    assert second is not None and second != first
    assert t.ended("a", first).closed == ()
    assert [c.reason for c in t.ended("a", second).closed] == [ENDED]


def test_owned_instances_are_beaten_every_interval():
    t = table(ConnectionConfig(detect_idle_ms=100_000))
    connect(t, "a")
    t.registered("a", SERVICE, instance(1), 0)
    t.registered("a", SERVICE, Instance("127.0.0.1", 2, metadata={"preserved.heart.beat.interval": "2000"}), 0)
    assert t.due(1999).beats == ()
    assert [i.port for _, i in t.due(2000).beats] == [2]
    assert sorted(i.port for _, i in t.due(5000).beats) == [1, 2]
    # re-registering does not add a second beat
    t.registered("a", SERVICE, instance(1), 5000)
    assert [i.port for _, i in t.due(10_000).beats].count(1) == 1


def test_a_deregistered_instance_is_not_beaten():
    t = table(ConnectionConfig(detect_idle_ms=100_000))
    connect(t, "a")
    t.registered("a", SERVICE, instance(1), 0)
    t.deregistered("a", SERVICE, instance(1).key)
    assert t.due(6000).beats == ()
    assert t.owner_of(SERVICE, instance(1).key) is None


def test_takeover_is_not_undone_by_the_old_connection_closing():
    t = table()
    old = connect(t, "old")
    connect(t, "new")
    t.registered("old", SERVICE, instance(1), 0)
    t.registered("new", SERVICE, instance(1), 10)
    assert t.owner_of(SERVICE, instance(1).key) == "new"
    closed = t.ended("old", old).closed
    assert closed[0].instances == ()
    assert t.owner_of(SERVICE, instance(1).key) == "new"


def test_limits_on_instances_and_subscriptions():
    t = table()
    connect(t, "a")
    for port in range(1, 5):
        assert t.may_register("a", SERVICE, instance(port).key)
        t.registered("a", SERVICE, instance(port), 0)
    assert not t.may_register("a", SERVICE, instance(5).key)
    assert t.may_register("a", SERVICE, instance(4).key)  # one it owns
    assert t.subscribed("a", SERVICE, "")
    assert t.subscribed("a", OTHER, "")
    assert t.subscribed("a", OTHER, "")  # again: the same one
    assert not t.subscribed("a", SERVICE, "DEFAULT")
    assert t.batch_plan("a", OTHER, [instance(9)]) is None  # 4 elsewhere + 1 > 4


def test_summaries_show_what_each_connection_holds():
    t = table()
    connect(t, "a", now=5)
    t.registered("a", SERVICE, instance(1), 6)
    t.subscribed("a", SERVICE, "c1")
    t.opened("b", "127.0.0.1", 6000, 7)  # not set up: not shown
    (summary,) = t.summaries()
    assert summary.connection_id == "a"
    assert summary.client_ip == "10.0.0.1"
    assert summary.labels == (("source", "sdk"),)
    assert summary.published == ((SERVICE, instance(1).key),)
    assert summary.subscribed == ((SERVICE, "c1"),)


# -- invariants ----------------------------------------------------------------------------

CONNECTIONS = ("a", "b", "c")
PORTS = st.integers(1, 6)
STEP = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(CONNECTIONS), st.sampled_from((SERVICE, OTHER)), PORTS),
    st.tuples(st.just("deregister"), st.sampled_from(CONNECTIONS), st.sampled_from((SERVICE, OTHER)), PORTS),
    st.tuples(
        st.just("batch"),
        st.sampled_from(CONNECTIONS),
        st.sampled_from((SERVICE, OTHER)),
        st.frozensets(PORTS, max_size=4),
    ),
    st.tuples(st.just("end"), st.sampled_from(CONNECTIONS), st.just(SERVICE), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_every_instance_has_at_most_one_owner_and_closing_removes_only_what_it_owns(steps):
    """Whatever registers, deregisters, batches and ends, in any order: each (service, key)
    is owned by one live connection at most, the owners map and the connections' sets agree,
    a batch leaves the connection with exactly the given set in that service, and an ending
    connection answers exactly the instances it still owned."""
    t = table(ConnectionConfig(max_instances=100, detect_idle_ms=10**9))
    generations = {name: connect(t, name) for name in CONNECTIONS}
    model: dict[tuple[ServiceKey, int], str] = {}
    for kind, name, service, arg in steps:
        if name not in t:
            generations[name] = connect(t, name)
        if kind == "register":
            t.registered(name, service, instance(arg), 0)
            model[(service, arg)] = name
        elif kind == "deregister":
            t.deregistered(name, service, instance(arg).key)
            if model.get((service, arg)) == name:
                del model[(service, arg)]
        elif kind == "batch":
            plan = t.batch_plan(name, service, [instance(p) for p in sorted(arg)])
            assert plan is not None
            owned_here = {key.port for s, key in t.owned(name) if s == service}
            assert {key.port for key in plan.deregister} == owned_here - set(arg)
            for key in plan.deregister:
                t.deregistered(name, service, key)
                model.pop((service, key.port), None)
            for registered in plan.register:
                t.registered(name, service, registered, 0)
                model[(service, registered.port)] = name
            assert {key.port for s, key in t.owned(name) if s == service} == set(arg)
        else:
            (closed,) = t.ended(name, generations[name]).closed
            expected = {slot for slot, owner in model.items() if owner == name}
            assert {(s, i.port) for s, i in closed.instances} == expected
            for slot in expected:
                del model[slot]
        for (svc, port), owner in model.items():
            assert t.owner_of(svc, instance(port).key) == owner
            assert (svc, instance(port).key) in t.owned(owner)
        for name_ in CONNECTIONS:
            for svc, key in t.owned(name_):
                assert model.get((svc, key.port)) == name_
