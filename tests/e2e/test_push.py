"""UDP push from a real node process to real subscribers, on loopback.

Subscribers are the npm `nacos` client (tests/e2e/node/driver.js; it poses as
`Nacos-Java-Client:v1.0.0`, so the node pushes to it), nacos-sdk-python's polling `subscribe`, and
raw UDP sockets in this process that poll like a Java client and ack (or not). PROTOCOL.md
section 4 has the wire format; the node pushes within a 5 ms coalescing window, resends an
unacked packet, and pushes to the list request's source address unless told to trust `clientIP`.

`push latency ms: ...` (printed with -s, and written to push_latency.json in the pytest base
temp dir) is the time from the HTTP answer to a write to the npm client's listener firing; it can
be a little negative, as the push may overtake the HTTP answer (the node applies the write, then
answers and pushes at once). The figures from the request's start are printed too.
"""

from __future__ import annotations

import gzip
import http.client
import json
import queue
import socket
import statistics
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import nacos
import pytest
from nacos.listener import SubscribeListener

from tests.e2e.test_node_client import node_bin, start_driver  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

NS = "/nacos/v1/ns"
JAVA_AGENT = "Nacos-Java-Client:v1.0.0"
PUSH_BOUND_S = 1.0  # every change must reach a push subscriber within this
QUIET_S = 0.5  # how long "nothing arrives" is watched


# -- helpers shared with test_health.py ---------------------------------------------------------


def now_ms() -> float:
    """Wall clock in ms: the same clock the npm driver stamps its events with (Date.now())."""
    return time.time() * 1000


def call(
    node, method: str, path: str, agent: str | None = None, source: str | None = None, **params: Any
) -> tuple[int, bytes]:
    """One HTTP request with every parameter in the query string (as the clients do), optionally
    with a User-Agent and from a chosen loopback source address."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    connection = http.client.HTTPConnection(
        "127.0.0.1", node.port, timeout=5, source_address=(source, 0) if source else None
    )
    try:
        connection.request(method, f"{path}?{query}", headers={"User-Agent": agent} if agent else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def ok(node, method: str, path: str, **params: Any) -> bytes:
    status, body = call(node, method, path, **params)
    assert status == 200, (method, path, params, status, body)
    return body


def get_json(node, path: str, **params: Any) -> Any:
    return json.loads(ok(node, "GET", path, **params))


def register(node, service: str, ip: str, port: int, metadata: dict[str, str] | None = None, **fields: Any) -> None:
    body = ok(
        node, "POST", f"{NS}/instance", serviceName=service, ip=ip, port=port,
        metadata=json.dumps(metadata) if metadata else None, **fields,
    )
    assert body == b"ok"


def deregister(node, service: str, ip: str, port: int, **fields: Any) -> None:
    assert ok(node, "DELETE", f"{NS}/instance", serviceName=service, ip=ip, port=port, **fields) == b"ok"


def listed(node, service: str, **params: Any) -> list[dict[str, Any]]:
    """The hosts of a plain (non-subscribing) list query."""
    return get_json(node, f"{NS}/instance/list", serviceName=service, **params)["hosts"]


def push_state(node) -> dict[str, Any]:
    return get_json(node, f"{NS}/operator/push/state")


def subscribers(node, service: str) -> list[dict[str, Any]]:
    return get_json(node, f"{NS}/service/subscribers", serviceName=service)["subscribers"]


def settled_push_state(node, timeout: float = 3.0) -> dict[str, Any]:
    """push/state once no packet awaits its ack any more."""
    deadline = time.monotonic() + timeout
    while True:
        state = push_state(node)
        if state["awaitingAck"] == 0 or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(every)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": round(min(values), 1),
        "p50": round(statistics.median(values), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def report(capsys, tmp_path_factory, file_name: str, line: str, document: dict[str, Any]) -> None:
    """Print a summary line (visible with -s and in the captured output) and keep the figures."""
    path = tmp_path_factory.getbasetemp() / file_name
    path.write_text(json.dumps(document, indent=2))
    with capsys.disabled():
        print(f"\n{line}  ({path})")


@dataclass
class Packet:
    t: float  # arrival, wall-clock ms
    source: tuple[str, int]
    envelope: dict[str, Any]
    data: dict[str, Any]  # the list answer inside
    gzipped: bool

    @property
    def hosts(self) -> list[dict[str, Any]]:
        return self.data["hosts"]


class UdpSubscriber:
    """A raw UDP push subscriber: a socket on `ip` (port chosen, or `port`), a reader thread that
    decodes every packet and (when `ack`) answers Nacos's push-ack from the same socket; `poll`
    is the list query that subscribes it, as a Java client would send it."""

    def __init__(self, ip: str = "127.0.0.1", port: int = 0, ack: bool = True) -> None:
        self.ack = ack
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.packets: list[Packet] = []
        self.garbage: list[bytes] = []
        self._queue: queue.Queue[Packet] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                raw, source = self.sock.recvfrom(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            arrived = now_ms()
            gzipped = raw[:2] == b"\x1f\x8b"
            try:
                envelope = json.loads(gzip.decompress(raw) if gzipped else raw)
                data = json.loads(envelope["data"])
            except (ValueError, KeyError, OSError, TypeError):
                self.garbage.append(raw)
                continue
            if self.ack:
                ack = {"type": "push-ack", "lastRefTime": envelope["lastRefTime"], "data": ""}
                self.sock.sendto(json.dumps(ack).encode(), source)
            packet = Packet(arrived, source, envelope, data, gzipped)
            self.packets.append(packet)
            self._queue.put(packet)

    def poll(
        self, node, service: str, client_ip: str | None = "127.0.0.1", source: str | None = None, **params: Any
    ) -> dict[str, Any]:
        status, body = call(
            node, "GET", f"{NS}/instance/list", agent=JAVA_AGENT, source=source,
            serviceName=service, udpPort=self.port, clientIP=client_ip, **params,
        )
        assert status == 200, body
        return json.loads(body)

    def next(self, timeout: float, what: str = "a push") -> Packet:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"udp {self.address}: no {what} within {timeout} s; got {len(self.packets)} packets")

    def wait(self, predicate: Callable[[Packet], bool], timeout: float, what: str) -> Packet:
        deadline = time.monotonic() + timeout
        while True:
            packet = self.next(max(deadline - time.monotonic(), 0.0), what)
            if predicate(packet):
                return packet

    def expect_nothing(self, seconds: float = QUIET_S) -> None:
        try:
            packet = self._queue.get(timeout=seconds)
        except queue.Empty:
            return
        pytest.fail(f"udp {self.address}: unexpected push {packet.envelope}")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def udp():
    """`udp(ip="127.0.0.1", port=0, ack=True)` -> a UdpSubscriber, closed at the end."""
    made: list[UdpSubscriber] = []

    def make(ip: str = "127.0.0.1", port: int = 0, ack: bool = True) -> UdpSubscriber:
        made.append(UdpSubscriber(ip, port, ack))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()


def same_port_on(ips: tuple[str, ...], udp) -> list[UdpSubscriber]:
    """One subscriber socket per loopback address, all on one port number (push goes to ip:udpPort)."""
    for _ in range(20):
        first = udp(ips[0])
        try:
            return [first, *(udp(ip, first.port) for ip in ips[1:])]
        except OSError:
            continue
    pytest.fail(f"no UDP port free on all of {ips}")


def states(hosts: list[dict[str, Any]]) -> set[tuple[str, int, float]]:
    return {(h["ip"], h["port"], h["weight"]) for h in hosts}


# -- 1. an npm subscriber hears every change at once ---------------------------------------------


def test_every_change_is_pushed_to_the_npm_subscriber_within_a_second(
    start_driver, node, capsys, tmp_path_factory
):
    service = "pushed"
    register(node, service, "127.0.0.1", 7000)
    subscriber = start_driver(trace=True)
    subscriber.send(op="subscribe", serviceName=service, id="s")
    first = subscriber.wait_for(lambda e: e["event"] == "hosts", 5, "the first list")
    assert states(first["hosts"]) == {("127.0.0.1", 7000, 1.0)}

    def is_poll(event: dict[str, Any]) -> bool:
        return event["event"] == "http" and event["path"].endswith("/instance/list")

    # The client lists once at subscribe and again 1 s later; after that it polls every
    # cacheMillis (10 s for a push subscriber). Start after the second poll: whatever the listener
    # hears during the changes has come by push.
    polls = [e for e in subscriber.events if is_poll(e)]
    if len(polls) < 2:
        subscriber.wait_for(is_poll, 5, "the poll 1 s after subscribing")
    answer = json.loads([e for e in subscriber.events if is_poll(e)][-1]["body"])
    assert answer["cacheMillis"] == 10000
    changes_started = now_ms()

    state = {("127.0.0.1", 7000, 1.0)}
    ports = list(range(7001, 7009))
    changes: list[tuple[str, Callable[[], None], set[tuple[str, int, float]]]] = []
    for port in ports:  # 8 registers
        state = state | {("127.0.0.1", port, 1.0)}
        changes.append((f"register {port}", lambda port=port: register(node, service, "127.0.0.1", port), state))
    for port, weight in zip(ports[:4], (2.0, 3.5, 0.5, 7.0)):  # 4 weight updates
        state = (state - {("127.0.0.1", port, 1.0)}) | {("127.0.0.1", port, weight)}
        changes.append((
            f"weight {port}",
            lambda port=port, weight=weight: ok(
                node, "PUT", f"{NS}/instance", serviceName=service, ip="127.0.0.1", port=port, weight=weight
            ),
            state,
        ))
    for port in (7000, *ports[:5]):  # 6 deregisters; 7006..7008 stay
        state = {s for s in state if s[1] != port}
        changes.append((f"deregister {port}", lambda port=port: deregister(node, service, "127.0.0.1", port), state))

    latencies: list[float] = []
    from_request: list[float] = []
    for name, change, expected in changes:
        sent = now_ms()
        change()
        answered = now_ms()
        seen = subscriber.wait_for(
            lambda e, expected=expected: e["event"] == "hosts" and states(e["hosts"]) == expected,
            PUSH_BOUND_S + 1,
            f"the listener after {name}",
        )
        latencies.append(seen["t"] - answered)
        from_request.append(seen["t"] - sent)
        assert seen["t"] - answered < PUSH_BOUND_S * 1000, (name, seen["t"] - answered)
        time.sleep(0.02)  # past the 5 ms coalescing window: one push per change
    changes_ended = now_ms()

    assert all(lat >= -1 for lat in from_request), from_request  # Date.now() is whole ms
    polls_during = [e for e in subscriber.events if is_poll(e) and changes_started <= e["t"] <= changes_ended]
    assert polls_during == [], "the client polled during the changes; the latency would not be push's"
    heard = [e for e in subscriber.events if e["event"] == "hosts" and e["t"] >= changes_started]
    assert len(heard) == len(changes)  # one listener call per change, none missing, none twice

    events = subscriber.finish()
    assert [e for e in events if e["event"] in ("log", "clientError", "timeout", "garbage")] == []

    figures = summary(latencies)
    document = {
        "what": "npm nacos 2.6.3 listener event time minus the HTTP answer time of the write (ms)",
        "changes": [name for name, _, _ in changes],
        "latency_ms": [round(v, 1) for v in latencies],
        "from_request_ms": [round(v, 1) for v in from_request],
        "summary": figures,
        "summary_from_request": summary(from_request),
    }
    line = "push latency ms: " + " ".join(f"{k}={v}" for k, v in figures.items() if k != "min")
    line += " (from the request: " + " ".join(
        f"{k}={v}" for k, v in document["summary_from_request"].items() if k in ("p50", "p99", "max")
    ) + ")"
    report(capsys, tmp_path_factory, "push_latency.json", line, document)


# -- 2. push/state and service/subscribers -------------------------------------------------------


def test_push_state_and_subscribers_show_the_npm_subscriber_and_its_acks(start_driver, node):
    service = "counted"
    register(node, service, "127.0.0.1", 7100)
    subscriber = start_driver(trace=True)
    udp_port = subscriber.events[0]["udpPort"]
    subscriber.send(op="subscribe", serviceName=service, id="s")
    subscriber.wait_for(lambda e: e["event"] == "hosts", 5, "the first list")
    assert push_state(node)["total"] == 0  # subscribing pushes nothing

    for port in (7101, 7102, 7103):
        register(node, service, "127.0.0.1", port)
        subscriber.wait_for(
            lambda e, port=port: e["event"] == "hosts" and port in {h["port"] for h in e["hosts"]},
            PUSH_BOUND_S + 1,
            f"the push of {port}",
        )
        time.sleep(0.02)

    state = settled_push_state(node)
    assert state["total"] == 3
    assert state["succeed"] == state["acked"] == 3
    assert state["failed"] == 0
    assert state["ratio"] == 1.0
    assert state["subscriberCount"] == 1
    assert state["awaitingAck"] == 0
    assert state["unmatchedAcks"] == state["malformedDatagrams"] == 0

    rows = subscribers(node, service)
    assert len(rows) == 1
    row = rows[0]
    assert row["addrStr"] == f"127.0.0.1:{udp_port}"
    assert (row["ip"], row["port"]) == ("127.0.0.1", udp_port)
    assert row["agent"] == JAVA_AGENT
    assert row["serviceName"] == f"DEFAULT_GROUP@@{service}"
    assert row["namespaceId"] == "public"
    assert row["cluster"] == "DEFAULT"
    assert subscribers(node, "nothing-like-it") == []
    subscriber.finish()


# -- 3. the Python SDK's polling subscribe ---------------------------------------------------------


def test_the_python_sdk_subscribe_sees_the_changes_by_polling(node, nacos_log_dir, capsys):
    service = "polled"
    register(node, service, "127.0.0.1", 7200)
    client = nacos.NacosClient(node.address, logDir=nacos_log_dir)
    heard: queue.Queue[tuple[float, str, str, dict[str, Any]]] = queue.Queue()

    def listener(event: str, slc: Any) -> None:
        heard.put((now_ms(), event, slc.instance_id, slc.instance))

    interval = 0.2
    client.subscribe(SubscribeListener(listener, "test"), interval, service_name=service)
    try:
        time.sleep(3 * interval)  # the client's first round only fills its cache (no event)
        assert heard.empty()

        def expect(event: str, port: int) -> tuple[float, dict[str, Any]]:
            t, got, instance_id, instance = heard.get(timeout=5 * interval + 1)
            assert (got, instance_id) == (event, f"127.0.0.1#{port}#DEFAULT#DEFAULT_GROUP@@{service}")
            return t, instance

        delays = []
        sent = now_ms()
        register(node, service, "127.0.0.1", 7201)
        t, instance = expect("ADDED", 7201)
        delays.append(t - sent)
        sent = now_ms()
        ok(node, "PUT", f"{NS}/instance", serviceName=service, ip="127.0.0.1", port=7200, weight=4.0)
        t, instance = expect("MODIFIED", 7200)
        assert instance["weight"] == 4.0
        delays.append(t - sent)
        sent = now_ms()
        deregister(node, service, "127.0.0.1", 7201)
        t, _ = expect("DELETED", 7201)
        delays.append(t - sent)
        time.sleep(3 * interval)
        assert heard.empty()
    finally:
        client.stop_subscribe()
        time.sleep(2 * interval)
        client.stop_subscribe()  # a round that was running at the first stop has rescheduled
    assert all(0 <= d < 5 * interval * 1000 for d in delays), delays
    with capsys.disabled():
        print(f"\npython sdk subscribe (poll every {interval} s): changes heard after "
              f"{', '.join(f'{d:.0f} ms' for d in delays)}")
    assert subscribers(node, service) == []  # a Python client is never a push subscriber


# -- 4. resends and failures ------------------------------------------------------------------


def test_an_unacked_push_is_resent_and_counted_failed_without_hurting_another_subscriber(start_node, udp):
    node = start_node("--push-ack-timeout-ms", "100", "--push-max-sends", "2")
    service = "lossy"
    register(node, service, "127.0.0.1", 7300)
    silent = udp(ack=False)
    acking = udp(ack=True)
    for subscriber in (silent, acking):
        assert subscriber.poll(node, service)["cacheMillis"] == 10000
    assert len(subscribers(node, service)) == 2

    for round_, port in enumerate((7301, 7302), start=1):
        register(node, service, "127.0.0.1", port)
        first = silent.wait(lambda p, port=port: port in {h["port"] for h in p.hosts}, 2, f"the push of {port}")
        again = silent.next(2, "the resend")
        assert again.envelope == first.envelope  # the same packet, same sequence
        assert 80 <= again.t - first.t <= 400, again.t - first.t  # after the 100 ms ack timeout
        good = acking.wait(lambda p, port=port: port in {h["port"] for h in p.hosts}, 2, f"the push of {port}")
        # The give-up comes 100 + 200 ms after the first send (the wait doubles).
        state = wait_until(
            lambda round_=round_: (s := push_state(node))["failed"] == round_ and s["acked"] == round_ and s,
            3, f"push {round_} counted failed for one subscriber and acked for the other",
        )
        assert state["total"] == 2 * round_
        assert state["succeed"] == round_
        assert state["ratio"] == 0.5
        silent.expect_nothing(0.3)  # two sends, no third
        assert good.data == first.data
    assert len(silent.packets) == 4 and len(acking.packets) == 2
    assert node.stderr().count("given up after 2 sends: no ack") == 2
    # A subscriber that never acks is still a subscriber (it polls); only its pushes fail.
    assert len(subscribers(node, service)) == 2


# -- 5. where the push goes ----------------------------------------------------------------------


@pytest.mark.parametrize("trust", [False, True], ids=["source-address", "trusted-clientIP"])
def test_push_goes_to_the_source_address_unless_client_ip_is_trusted(start_node, udp, trust):
    node = start_node(*(["--push-trust-client-ip", "true"] if trust else []))
    one, two, three = same_port_on(("127.0.0.1", "127.0.0.2", "127.0.0.3"), udp)
    register(node, "aimed-one", "127.0.0.1", 7400)
    register(node, "aimed-three", "127.0.0.1", 7400)
    # A query from 127.0.0.1 that names clientIP=127.0.0.2, and one from 127.0.0.3 that does too.
    one.poll(node, "aimed-one", client_ip="127.0.0.2")
    three.poll(node, "aimed-three", client_ip="127.0.0.2", source="127.0.0.3")
    expected = {"aimed-one": "127.0.0.2", "aimed-three": "127.0.0.2"} if trust else {
        "aimed-one": "127.0.0.1", "aimed-three": "127.0.0.3"
    }
    for service, ip in expected.items():
        assert [r["addrStr"] for r in subscribers(node, service)] == [f"{ip}:{one.port}"]

    by_ip = {"127.0.0.1": one, "127.0.0.2": two, "127.0.0.3": three}
    for service, ip in expected.items():
        register(node, service, "127.0.0.1", 7401)
        packet = by_ip[ip].next(2, f"the push of {service} at {ip}")
        assert packet.data["name"] == f"DEFAULT_GROUP@@{service}"
        assert {h["port"] for h in packet.hosts} == {7400, 7401}
        for other_ip, other in by_ip.items():
            if other_ip != ip:
                other.expect_nothing(0.2)
    # The acks came from where the pushes went, so they matched.
    state = settled_push_state(node)
    assert (state["total"], state["acked"], state["failed"], state["unmatchedAcks"]) == (2, 2, 0, 0)


# -- 6. subscribers that stop polling ---------------------------------------------------------------


def test_a_subscriber_that_stops_polling_is_dropped_after_half_again_the_push_cache_time(start_node, udp):
    node = start_node("--push-cache-ms", "1500")
    service = "forgetful"
    register(node, service, "127.0.0.1", 7500)
    quitter = udp()
    keeper = udp()
    poll_sent = now_ms()
    answer = quitter.poll(node, service)
    polled = now_ms()
    assert answer["cacheMillis"] == 1500  # what the client is told to re-poll by
    keeper.poll(node, service)
    assert {r["port"] for r in subscribers(node, service)} == {quitter.port, keeper.port}

    stop = threading.Event()

    def keep_polling() -> None:
        while not stop.wait(0.5):
            keeper.poll(node, service)

    poller = threading.Thread(target=keep_polling, daemon=True)
    poller.start()
    try:
        register(node, service, "127.0.0.1", 7501)
        assert 7501 in {h["port"] for h in quitter.next(1).hosts}
        assert 7501 in {h["port"] for h in keeper.next(1).hosts}

        wait_until(
            lambda: quitter.port not in {r["port"] for r in subscribers(node, service)},
            4, "the quiet subscriber dropped",
        )
        dropped = now_ms()
        lifetime = 1500 * 3 // 2  # clients re-poll cacheMillis after the answer: half again as grace
        assert dropped - poll_sent >= lifetime and dropped - polled <= lifetime + 1000, (poll_sent, polled, dropped)
        assert [r["port"] for r in subscribers(node, service)] == [keeper.port]
        assert push_state(node)["subscriberCount"] == 1

        register(node, service, "127.0.0.1", 7502)
        assert 7502 in {h["port"] for h in keeper.next(1).hosts}
        quitter.expect_nothing(QUIET_S)
    finally:
        stop.set()
        poller.join(2)
    # Polling again subscribes again.
    quitter.poll(node, service)
    deregister(node, service, "127.0.0.1", 7502)
    assert 7502 not in {h["port"] for h in quitter.next(1).hosts}


def test_a_subscriber_on_the_clients_poll_schedule_hears_a_change_just_before_its_re_poll(start_node, udp):
    node = start_node("--push-cache-ms", "1500")
    service = "punctual"
    register(node, service, "127.0.0.1", 7600)
    subscriber = udp()
    cache_ms = subscriber.poll(node, service)["cacheMillis"]
    answered = now_ms()
    assert cache_ms == 1500
    # The clients wait cacheMillis after the answer, then send the next query; a change comes in
    # the few ms before that query arrives.
    time.sleep(max(0.0, answered + cache_ms + 3 - now_ms()) / 1000)
    register(node, service, "127.0.0.1", 7601)
    subscriber.poll(node, service)
    pushed = subscriber.next(1, "the push of the change made just before the re-poll")
    assert {h["port"] for h in pushed.hosts} == {7600, 7601}
