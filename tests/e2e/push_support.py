"""Helpers of the push and health end-to-end tests: HTTP calls made as the clients make them,
a raw UDP subscriber that acks (or not), percentiles and reports."""

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

import pytest

NS = "/nacos/v1/ns"
JAVA_AGENT = "Nacos-Java-Client:v1.0.0"
QUIET_S = 0.5  # how long "nothing arrives" is watched


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
