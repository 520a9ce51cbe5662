"""Beat deadlines on a real node process: unhealthy, removal, revival, flags, empty services.

Instances carry short timeouts in their metadata (PROTOCOL.md section 3; milliseconds as
strings): unhealthy 1.5 s and removed 3 s after the last beat. The node keeps one deadline per
service, so each verdict should land at its deadline (never before it, and well within 0.5 s
after); `expiry precision ms: ...` (printed with -s, written to expiry_precision.json in the pytest
base temp dir) is the push arrival of each verdict minus its deadline counted from the HTTP answer
of the register (or last beat).

Nacos's protect threshold (0 by default) reports every instance healthy when none is, so each
service here keeps a healthy persistent "anchor" instance next to the ones that go silent.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import nacos
import pytest
from nacos.task import HeartbeatTask
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.probe_support import Listener
from tests.e2e.push_support import (
    NS,
    call,
    deregister,
    get_json,
    listed,
    now_ms,
    ok,
    push_state,
    register,
    report,
    summary,
)

pytestmark = pytest.mark.e2e

IP = "127.0.0.1"
TIMEOUT_MS = 1500
DELETE_MS = 3000
SHORT = {"preserved.heart.beat.timeout": str(TIMEOUT_MS), "preserved.ip.delete.timeout": str(DELETE_MS)}
SLACK_MS = 500  # a verdict lands within this after its deadline
POLL_S = 0.05
# The anchors' port accepts connections for the whole session: a node probes persistent
# instances (TCP, their cluster's default checker) and would find a closed port unhealthy.
ANCHOR_LISTENER = Listener().open()
ANCHOR_PORT = ANCHOR_LISTENER.port


def anchor(node, service: str) -> None:
    """A persistent instance on a port that accepts (its probes succeed): never expires,
    keeps the service above its protect threshold."""
    register(node, service, IP, ANCHOR_PORT, metadata=SHORT, ephemeral="false")


def state_of(node, service: str, port: int) -> str:
    """healthy / unhealthy / removed, as a plain list query reports the instance at IP:port."""
    hosts = {h["port"]: h for h in listed(node, service)}
    assert hosts.get(ANCHOR_PORT, {}).get("healthy") is True, "the anchor is missing or unhealthy"
    if port not in hosts:
        return "removed"
    assert hosts[port]["valid"] is hosts[port]["healthy"]
    return "healthy" if hosts[port]["healthy"] else "unhealthy"


class Watch:
    """Polls one instance's state every POLL_S; remembers when each state was first seen (the
    answer's arrival) and when the poll that saw it was sent."""

    def __init__(self, node, service: str, port: int) -> None:
        self.node, self.service, self.port = node, service, port
        self.first_seen: dict[str, float] = {}
        self.sent_of_first: dict[str, float] = {}
        self.seen: list[tuple[float, str]] = []

    def until(self, wanted: str, limit_ms: float) -> float:
        """Poll until `wanted` is seen (its first-seen time) or wall clock `limit_ms` (fail)."""
        while True:
            sent = now_ms()
            state = state_of(self.node, self.service, self.port)
            seen = now_ms()
            self.seen.append((seen, state))
            if state not in self.first_seen:
                self.first_seen[state] = seen
                self.sent_of_first[state] = sent
            if state == wanted:
                return seen
            if seen > limit_ms:
                pytest.fail(f"{self.service}:{self.port} not {wanted} by the limit; seen {self.seen[-5:]}")
            time.sleep(POLL_S)

    def states_between(self, start_ms: float, end_ms: float) -> set[str]:
        return {state for t, state in self.seen if start_ms <= t <= end_ms}


def light_beat(node, service: str, port: int, ip: str = IP) -> tuple[float, float, dict[str, Any]]:
    """(sent, answered, answer) of a beat without the `beat` JSON."""
    sent = now_ms()
    answer = json.loads(ok(node, "PUT", f"{NS}/instance/beat", serviceName=service, ip=ip, port=port))
    return sent, now_ms(), answer


def assert_on_time(what: str, seen: float, earliest: float, deadline: float) -> None:
    """`seen` is not before `earliest` (the deadline counted from the request's start) and at
    most SLACK_MS after `deadline` (counted from the answer)."""
    assert seen >= earliest, f"{what} {earliest - seen:.0f} ms before its deadline"
    assert seen <= deadline + SLACK_MS, f"{what} {seen - deadline:.0f} ms after its deadline"


def hosts_by_port(packet) -> dict[int, dict[str, Any]]:
    return {h["port"]: h for h in packet.hosts}


# -- 1. a silent instance: unhealthy, then removed, each pushed ------------------------------------


def test_silent_instances_turn_unhealthy_then_are_removed_on_time_and_each_is_pushed(
    node, udp, capsys, tmp_path_factory
):
    """Five silent instances, their timeouts 40 ms apart (1500/3000, 1540/3040, ...), so each
    verdict is its own push; a list poll every 50 ms and an acking UDP subscriber watch them."""
    service = "silent"
    anchor(node, service)
    ports = [8001 + k for k in range(5)]
    timeouts = {port: (TIMEOUT_MS + 40 * k, DELETE_MS + 40 * k) for k, port in enumerate(ports)}
    registered = {}
    for port, (timeout, delete) in timeouts.items():
        metadata = {"preserved.heart.beat.timeout": str(timeout), "preserved.ip.delete.timeout": str(delete)}
        sent = now_ms()
        register(node, service, IP, port, metadata=metadata)
        registered[port] = (sent, now_ms())
    subscriber = udp()
    subscriber.poll(node, service)

    # Poll until every instance is gone; note when each state of each instance was first seen.
    first_seen: dict[tuple[int, str], float] = {}
    limit = max(a for _, a in registered.values()) + max(d for _, d in timeouts.values()) + SLACK_MS + 1000
    while True:
        hosts = {h["port"]: h for h in listed(node, service)}
        seen = now_ms()
        assert hosts[ANCHOR_PORT]["healthy"] is True
        for port in ports:
            state = "removed" if port not in hosts else "healthy" if hosts[port]["healthy"] else "unhealthy"
            first_seen.setdefault((port, state), seen)
        if set(hosts) == {ANCHOR_PORT}:
            break
        assert seen < limit, f"not all removed in time: {sorted(hosts)}"
        time.sleep(POLL_S)

    # Each push is one verdict: the first packet where an instance shows unhealthy, or is gone.
    packets = [subscriber.next(1, f"push {n + 1} of 10") for n in range(10)]
    subscriber.expect_nothing(0.3)
    pushed: dict[tuple[int, str], float] = {}
    for packet in packets:
        by_port = hosts_by_port(packet)
        assert by_port[ANCHOR_PORT]["healthy"] is True
        for port in ports:
            state = "removed" if port not in by_port else "healthy" if by_port[port]["healthy"] else "unhealthy"
            if state != "healthy":
                assert by_port.get(port, {}).get("valid", False) is False
                pushed.setdefault((port, state), packet.t)
    assert len(pushed) == len(ports) * 2

    errors: dict[str, list[float]] = {"unhealthy_push": [], "removed_push": [], "unhealthy_poll": [], "removed_poll": []}
    for port in ports:
        sent, answered = registered[port]
        for state, timeout in zip(("unhealthy", "removed"), timeouts[port]):
            for source, at in (("push", pushed[(port, state)]), ("poll", first_seen[(port, state)])):
                assert_on_time(f"{port} {state} ({source})", at, sent + timeout, answered + timeout)
                errors[f"{state}_{source}"].append(round(at - (answered + timeout), 1))
        # Listed, unhealthy, between the two deadlines.
        assert first_seen[(port, "unhealthy")] < first_seen[(port, "removed")]
    state = push_state(node)
    assert (state["total"], state["acked"], state["failed"]) == (10, 10, 0)

    push_errors = errors["unhealthy_push"] + errors["removed_push"]
    figures = summary(push_errors)
    document = {
        "what": "verdict push arrival minus deadline (register HTTP answer + timeout), ms",
        "register_round_trip_ms": [round(a - s, 1) for s, a in registered.values()],
        "poll_every_ms": POLL_S * 1000,
        **errors,
        "summary_push": figures,
        "summary_poll": summary(errors["unhealthy_poll"] + errors["removed_poll"]),
    }
    line = "expiry precision ms (push arrival - deadline): " + " ".join(f"{k}={v}" for k, v in figures.items())
    line += f" (seen by {POLL_S * 1000:.0f} ms polls: max={document['summary_poll']['max']})"
    report(capsys, tmp_path_factory, "expiry_precision.json", line, document)


# -- 2. beats keep it healthy; silence makes it unhealthy; a beat revives it ----------------------


class Beater:
    """Light beats for one instance every `every` s on a thread, until stopped."""

    def __init__(self, node, service: str, port: int, every: float = 0.5) -> None:
        self.node, self.service, self.port, self.every = node, service, port, every
        self.beats: list[tuple[float, float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.beats.append(light_beat(self.node, self.service, self.port))
            if self._stop.wait(self.every):
                return

    def stop(self) -> tuple[float, float]:
        """Stop; (sent, answered) of the last beat."""
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive()
        return self.beats[-1][0], self.beats[-1][1]


def test_beats_keep_an_instance_healthy_and_a_beat_revives_it(node, udp):
    service = "beating"
    anchor(node, service)
    register(node, service, IP, 8101, metadata=SHORT)
    started = now_ms()
    beater = Beater(node, service, 8101, every=0.5)
    watch = Watch(node, service, 8101)
    try:
        while now_ms() < started + DELETE_MS + 500:  # past both timeouts
            assert state_of(node, service, 8101) == "healthy"
            time.sleep(POLL_S)
    finally:
        last_sent, last_answered = beater.stop()
    assert len(beater.beats) >= 7
    assert {(b[2]["code"], b[2]["clientBeatInterval"]) for b in beater.beats} == {(10200, 5000)}
    subscriber = udp()
    subscriber.poll(node, service)

    seen = watch.until("unhealthy", last_answered + TIMEOUT_MS + SLACK_MS + 1000)
    assert_on_time("unhealthy after the beats stopped", seen, last_sent + TIMEOUT_MS, last_answered + TIMEOUT_MS)
    assert hosts_by_port(subscriber.next(1, "the unhealthy push"))[8101]["healthy"] is False

    time.sleep(0.02)  # past the push coalescing window: the revival gets its own push
    revive_sent, revive_answered, answer = light_beat(node, service, 8101)
    assert answer["code"] == 10200
    assert answer["lightBeatEnabled"] is True
    revived = subscriber.wait(lambda p: hosts_by_port(p)[8101]["healthy"], 1, "the revival push")
    assert revived.t >= revive_sent
    # (That it then stays healthy for a whole beat timeout: see the revival test below.)

    # Silent again: unhealthy, then removed, counted from the reviving beat; then a light beat
    # finds nothing (20404: the Java client would register again).
    seen = watch.until("removed", revive_answered + DELETE_MS + SLACK_MS + 1000)
    assert_on_time("removed after the revival", seen, revive_sent + DELETE_MS, revive_answered + DELETE_MS)
    assert "unhealthy" in watch.states_between(revive_answered + TIMEOUT_MS + SLACK_MS, revive_sent + DELETE_MS)
    assert light_beat(node, service, 8101)[2] == {"clientBeatInterval": 5000, "code": 20404}
    assert state_of(node, service, 8101) == "removed"


# -- 3. what never expires, and the switches ------------------------------------------------------


@pytest.mark.skip(reason="no API marks an instance (`marked` is only ever false on this node)")
def test_a_marked_instance_never_expires():
    pass


def test_persistent_instances_never_expire_and_the_health_switches(start_node):
    nodes = {
        "default": start_node(wait=False),
        "no-check": start_node("--health-check-enabled", "false", wait=False),
        "no-expire": start_node("--expire-instances", "false", wait=False),
    }
    answered = {}
    for name, node in nodes.items():
        node.wait_ready()
        anchor(node, "mixed")  # persistent, with the short timeouts, never beaten
        register(node, "mixed", IP, 8201, metadata=SHORT)
        answered[name] = now_ms()
    first = min(answered.values())
    seen: dict[str, list[tuple[float, str]]] = {name: [] for name in nodes}
    while now_ms() < max(answered.values()) + DELETE_MS + SLACK_MS + 300:
        for name, node in nodes.items():
            seen[name].append((now_ms() - answered[name], state_of(node, "mixed", 8201)))  # checks the anchor
        time.sleep(0.1)

    def first_time(name: str, state: str) -> float | None:
        return next((t for t, s in seen[name] if s == state), None)

    assert {s for _, s in seen["no-check"]} == {"healthy"}
    assert {s for _, s in seen["no-expire"]} == {"healthy", "unhealthy"}
    assert seen["no-expire"][-1][1] == "unhealthy"
    assert TIMEOUT_MS - 50 <= first_time("no-expire", "unhealthy") <= TIMEOUT_MS + SLACK_MS + 200
    assert seen["default"][-1][1] == "removed"
    assert TIMEOUT_MS - 50 <= first_time("default", "unhealthy") <= TIMEOUT_MS + SLACK_MS + 200
    assert DELETE_MS - 50 <= first_time("default", "removed") <= DELETE_MS + SLACK_MS + 200
    for node in nodes.values():  # the persistent instance, silent as long, is there and healthy
        detail = get_json(node, f"{NS}/instance", serviceName="mixed", ip=IP, port=ANCHOR_PORT)
        assert (detail["healthy"], detail["ephemeral"]) == (True, False)
    assert now_ms() - first > DELETE_MS + SLACK_MS


# -- 4. empty services ---------------------------------------------------------------------------


def service_names(node) -> list[str]:
    return get_json(node, f"{NS}/service/list", pageNo=1, pageSize=100)["doms"]


def test_empty_services_are_kept_by_default_and_cleaned_when_configured(start_node):
    keeper = start_node(wait=False)
    cleaner = start_node("--empty-service-auto-clean", "true", "--empty-service-ttl-ms", "1000", wait=False)
    keeper.wait_ready()
    cleaner.wait_ready()
    for node in (keeper, cleaner):
        register(node, "busy", IP, 8301)
        register(node, "emptied", IP, 8300)
    emptied = {}
    for node in (keeper, cleaner):
        sent = now_ms()
        deregister(node, "emptied", IP, 8300)
        emptied[node.port] = (sent, now_ms())
        assert sorted(service_names(node)) == ["busy", "emptied"]

    sent, answered = emptied[cleaner.port]
    while "emptied" in service_names(cleaner):
        assert now_ms() < answered + 1000 + SLACK_MS + 500, "the empty service is still listed"
        time.sleep(POLL_S)
    gone = now_ms()
    assert_on_time("the empty service's removal", gone, sent + 1000, answered + 1000)
    assert service_names(cleaner) == ["busy"]
    assert call(cleaner, "GET", f"{NS}/service", serviceName="emptied")[0] == 404
    # The default keeps it (Nacos's auto-clean is off by default).
    time.sleep(max(0.0, (emptied[keeper.port][1] + 1500 - now_ms()) / 1000))
    assert sorted(service_names(keeper)) == ["busy", "emptied"]
    assert get_json(keeper, f"{NS}/service", serviceName="emptied")["name"] == "emptied"
    # A cleaned service comes back with its next instance.
    register(cleaner, "emptied", IP, 8300)
    assert sorted(service_names(cleaner)) == ["busy", "emptied"]


# -- 5. the Python SDK's heartbeat thread -------------------------------------------------------------


def test_the_python_sdk_heartbeat_thread_keeps_its_instance_healthy(node, nacos_log_dir):
    client = nacos.NacosClient(node.address, logDir=nacos_log_dir)
    assert client.add_naming_instance("sdk-beat", IP, 8400, cluster_name="c1", metadata=SHORT, heartbeat_interval=0.5)
    # cluster_name=None: registered in cluster "None", beaten (and so registered again) in DEFAULT.
    assert client.add_naming_instance("sdk-quirk", IP, 8401, metadata=SHORT, heartbeat_interval=0.5)
    started = now_ms()
    tasks = [t for t in threading.enumerate() if isinstance(t, HeartbeatTask)]
    assert len(tasks) == 2
    try:
        while now_ms() < started + DELETE_MS + SLACK_MS:
            detail = client.get_naming_instance("sdk-beat", IP, 8400, "c1")
            assert detail["healthy"] is True
            assert detail["metadata"] == SHORT
            time.sleep(0.1)
        quirk = {(h["clusterName"], h["healthy"]) for h in client.list_naming_instance("sdk-quirk")["hosts"]}
        # The "None" copy never beat: it expired as Nacos would expire it; the DEFAULT copy lives.
        assert quirk == {("DEFAULT", True)}
        assert {(h["port"], h["healthy"]) for h in client.list_naming_instance("sdk-beat")["hosts"]} == {(8400, True)}
    finally:
        assert client.remove_naming_instance("sdk-beat", IP, 8400, cluster_name="c1")
        assert client.remove_naming_instance("sdk-quirk", IP, 8401)
        for task in tasks:
            task.join(timeout=5)
    assert not any(task.is_alive() for task in tasks)
    # nacos-sdk-python sends the DELETE before it stops the heartbeat thread, so a full beat
    # already on its way may register the instance again (Nacos does the same): once the
    # threads are gone, one more removal leaves nothing.
    assert client.remove_naming_instance("sdk-beat", IP, 8400, cluster_name="c1")
    assert client.remove_naming_instance("sdk-quirk", IP, 8401)
    assert client.list_naming_instance("sdk-beat")["hosts"] == []
    assert client.list_naming_instance("sdk-quirk")["hosts"] == []


# -- 6. the figures agree ---------------------------------------------------------------------------


def scrape(node) -> list[tuple[str, dict[str, str], float]]:
    status, body = call(node, "GET", "/nacos/actuator/prometheus")
    assert status == 200
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def test_prometheus_counts_the_health_transitions_and_agrees_with_push_state(node, udp):
    service = "counted"
    anchor(node, service)
    register(node, service, IP, 8501, metadata=SHORT)  # goes silent: unhealthy, then removed
    register(node, service, IP, 8502, metadata=SHORT)  # goes silent: unhealthy, revived, deregistered
    answered = now_ms()
    subscriber = udp()
    subscriber.poll(node, service)

    Watch(node, service, 8502).until("unhealthy", answered + TIMEOUT_MS + SLACK_MS + 1000)
    Watch(node, service, 8501).until("unhealthy", answered + TIMEOUT_MS + SLACK_MS + 1000)
    assert light_beat(node, service, 8502)[2]["code"] == 10200
    deregister(node, service, IP, 8502)
    Watch(node, service, 8501).until("removed", answered + DELETE_MS + SLACK_MS + 1000)
    subscriber.wait(lambda p: set(hosts_by_port(p)) == {ANCHOR_PORT}, 1, "the push of the removal")
    time.sleep(0.1)

    state = push_state(node)
    samples = scrape(node)
    transitions = {
        labels["transition"]: v for n, labels, v in samples if n == "nacos_actors_health_transitions_total"
    }
    # What happened, as the node logged it. Two instances went unhealthy; the revived one can go
    # unhealthy once more at once (see the revival test below), which is counted too.
    log = node.stderr()
    assert transitions["unhealthy"] == log.count("marked unhealthy (beat timeout)") >= 2
    assert transitions["removed"] == log.count("expired (delete timeout)") == 1
    assert transitions["revived"] == 1
    beats = {labels["outcome"]: v for n, labels, v in samples if n == "nacos_actors_beats_total"}
    assert beats["revived"] == 1

    monitor = {labels["name"]: v for n, labels, v in samples if n == "nacos_monitor"}
    assert monitor["subscriberCount"] == state["subscriberCount"] == 1
    assert monitor["totalPush"] == state["total"] == len(subscriber.packets)
    assert monitor["failedPush"] == state["failed"] == 0
    assert state["acked"] == state["total"]
    # unhealthy x2 (one or two pushes: 8502's deadline is a few ms after 8501's), revived,
    # (perhaps unhealthy again), deregistered, removed.
    assert 4 <= state["total"] <= 6
    delays = {n: v for n, labels, v in samples if n.startswith("nacos_actors_push_delay_seconds")}
    assert delays["nacos_actors_push_delay_seconds_count"] == state["total"]
    assert delays["nacos_actors_push_delay_seconds_sum"] < 0.1 * state["total"]
    assert monitor["ipCount"] == 1  # the anchor



def test_a_beat_revives_an_unhealthy_instance_for_a_whole_beat_timeout(node, udp):
    """Each revival must last a beat timeout. The race loses only some revivals (a third of them
    on a 2-CPU machine), so this revives up to 30 times and fails at the first that is undone."""
    service = "revival"
    timeout_ms = 300
    anchor(node, service)
    register(node, service, IP, 8701, metadata={"preserved.heart.beat.timeout": str(timeout_ms)})
    subscriber = udp()
    subscriber.poll(node, service)

    def healthy(packet) -> bool:
        return hosts_by_port(packet)[8701]["healthy"]

    subscriber.wait(lambda p: not healthy(p), 2, "the first unhealthy push")
    lasted: list[float] = []
    for revival in range(1, 31):
        time.sleep(0.02)  # past the push coalescing window
        assert light_beat(node, service, 8701)[2]["code"] == 10200
        revived = subscriber.wait(healthy, 1, f"the push of revival {revival}")
        undone = subscriber.wait(lambda p: not healthy(p), 2, f"the unhealthy push after revival {revival}")
        lasted.append(round(undone.t - revived.t, 1))
        # Pushed at most a few ms late, the verdict comes a beat timeout after the beat.
        assert lasted[-1] >= timeout_ms - 100, f"revival {revival} undone after {lasted[-1]} ms; all: {lasted}"
